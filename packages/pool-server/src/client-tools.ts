// pg_dump, pg_restore and psql by major version. A dump is only possible with a pg_dump at least
// as new as the server (it refuses a newer one), and pg_restore must read what that pg_dump wrote,
// so tools are taken as a set from one directory. Looked for in the configured directories, in
// /usr/lib/postgresql/<major>/bin (Debian, Ubuntu) and in PATH; database-worker logs what it found
// at start-up, and a move that finds none fitting fails with the reason chooseTools gives.
import { execFile } from 'node:child_process';
import { access, constants, readdir, realpath } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const TOOLS = ['pg_dump', 'pg_restore', 'psql'] as const;

export interface ClientTools {
  dir: string;
  /** pg_dump --version, e.g. "15.14". */
  version: string;
  major: number;
  pg_dump: string;
  pg_restore: string;
  psql: string;
}

export type ToolChoice = { kind: 'found'; tools: ClientTools } | { kind: 'none'; reason: string };

export interface FindToolsOptions {
  /** Searched first (TENANTDB_CLIENT_TOOL_DIRS). */
  dirs?: readonly string[];
  /** Default process.env.PATH. */
  path?: string;
  /** Where Debian keeps one bin directory per major; default /usr/lib/postgresql. */
  libRoot?: string;
}

/** "pg_dump (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)" → 15.14; 9.6 style → 9.6. */
export function parseToolVersion(output: string): { version: string; major: number } | undefined {
  const match = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(output);
  if (!match) return undefined;
  const first = Number(match[1]);
  const major = first >= 10 ? first : Number(`${first}.${match[2] ?? 0}`);
  return { version: match[2] ? `${match[1]}.${match[2]}` : match[1]!, major };
}

async function executable(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function toolsIn(dir: string): Promise<ClientTools | undefined> {
  const paths = TOOLS.map((t) => join(dir, t));
  for (const p of paths) if (!(await executable(p))) return undefined;
  try {
    const { stdout } = await run(paths[0]!, ['--version'], { timeout: 10_000 });
    const parsed = parseToolVersion(stdout);
    if (!parsed) return undefined;
    return { dir, ...parsed, pg_dump: paths[0]!, pg_restore: paths[1]!, psql: paths[2]! };
  } catch {
    return undefined;
  }
}

/** Every directory holding all three tools, once each (by real path), in search order. */
export async function findClientTools(opts: FindToolsOptions = {}): Promise<ClientTools[]> {
  const libRoot = opts.libRoot ?? '/usr/lib/postgresql';
  const versioned = await readdir(libRoot).catch(() => [] as string[]);
  const candidates = [
    ...(opts.dirs ?? []),
    ...versioned.sort((a, b) => Number(b) - Number(a)).map((v) => join(libRoot, v, 'bin')),
    ...(opts.path ?? process.env.PATH ?? '').split(delimiter).filter(Boolean),
  ];
  const seen = new Set<string>();
  const found: ClientTools[] = [];
  for (const dir of candidates) {
    const real = await realpath(dir).catch(() => undefined);
    if (!real || seen.has(real)) continue;
    seen.add(real);
    const tools = await toolsIn(dir);
    // Debian's /usr/bin/pg_dump is a wrapper that runs the newest installed major: the same tools
    // as a versioned directory already found, so it only counts when it says a new major.
    if (tools && !found.some((f) => f.major === tools.major)) found.push(tools);
  }
  return found;
}

/**
 * The tools for a server of `serverMajor`: the oldest major that is at least the server's (the
 * closest fit; a newer pg_dump dumps an older server). `none` with the reason otherwise.
 */
export function chooseTools(found: readonly ClientTools[], serverMajor: number): ToolChoice {
  const fitting = found.filter((t) => t.major >= serverMajor).sort((a, b) => a.major - b.major);
  if (fitting[0]) return { kind: 'found', tools: fitting[0] };
  const have = found.length
    ? `found ${found.map((t) => `${t.version} in ${t.dir}`).join(', ')}`
    : 'found none at all';
  return {
    kind: 'none',
    reason: `no pg_dump/pg_restore/psql of PostgreSQL ${serverMajor} or newer (${have}); install them or add their directory to TENANTDB_CLIENT_TOOL_DIRS`,
  };
}

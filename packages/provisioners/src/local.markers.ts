// The local driver's marker (<root>/<name>/tenantdb.json, its "label"): reading one or all of
// them, and picking a loopback port no other server of this root has recorded or holds.
import type { Dirent } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { errCode } from './local.exec';
import { MANAGED_BY, PermanentProvisionError } from './provisioner';

export interface Marker {
  managed_by: typeof MANAGED_BY;
  server_id: string;
  name: string;
  host: string;
  port: number;
  created_at: string;
}

export const MARKER = 'tenantdb.json';
export const MARKER_TMP = `${MARKER}.tmp`;
export const NAME_RE = /^[a-z][a-z0-9-]{0,62}$/;

export async function readMarker(dir: string, name: string): Promise<Marker | undefined> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(join(dir, MARKER), 'utf8'));
  } catch {
    return undefined;
  }
  const m = parsed as Partial<Marker> | null;
  const valid =
    m !== null &&
    typeof m === 'object' &&
    m.managed_by === MANAGED_BY &&
    typeof m.server_id === 'string' &&
    m.server_id !== '' &&
    m.name === name &&
    typeof m.host === 'string' &&
    Number.isInteger(m.port) &&
    (m.port as number) > 0 &&
    (m.port as number) < 65536 &&
    typeof m.created_at === 'string';
  return valid ? (m as Marker) : undefined;
}

export async function readMarkers(root: string): Promise<Marker[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch (err) {
    if (errCode(err) === 'ENOENT') return [];
    throw err;
  }
  const markers = await Promise.all(
    entries
      .filter((e) => e.isDirectory() && NAME_RE.test(e.name))
      .map((e) => readMarker(join(root, e.name), e.name)),
  );
  return markers.filter((m): m is Marker => m !== undefined);
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (errCode(err) === 'ENOENT') return false;
    throw err;
  }
}

export async function pickPort(
  host: string,
  taken: Set<number>,
  range?: { from: number; to: number },
): Promise<number> {
  if (!range) {
    // Ports recorded in markers are skipped: a stopped server is not bound to its port but will want it back.
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = await tryBind(host, 0);
      if (port !== undefined && !taken.has(port)) return port;
    }
    throw new Error(`no free port on ${host}`);
  }
  const candidates: number[] = [];
  for (let p = range.from; p <= range.to; p++) if (!taken.has(p)) candidates.push(p);
  // Random order, so concurrent drivers (or a retried create) do not all race for the first port.
  for (let i = candidates.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [candidates[i], candidates[j]] = [candidates[j]!, candidates[i]!];
  }
  for (const port of candidates) {
    if ((await tryBind(host, port)) !== undefined) return port;
  }
  throw new PermanentProvisionError(`no free port on ${host} in ${range.from}-${range.to}`);
}

function tryBind(host: string, port: number): Promise<number | undefined> {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolvePort(undefined));
    server.listen({ host, port, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : undefined;
      server.close(() => resolvePort(bound));
    });
  });
}

// A local server's Postgres: initdb with the settings file the driver owns, pg_ctl start and stop,
// whether its postmaster runs, and what its log says.
//
// Settings live in data/tenantdb.conf, included from postgresql.conf, rather than on the pg_ctl
// command line: a restart (start(), or create() adopting a stopped server) then needs nothing but
// the data directory, and values never pass through the shell that pg_ctl runs the server with.
import { constants as fsConstants } from 'node:fs';
import { appendFile, chmod, mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { binariesFor, LOCAL_DEFAULT_MAJOR, majorOf } from './local.binaries';
import { chownTo, errCode, type RunAs, run } from './local.exec';
import type { Marker } from './local.markers';
import type { ServerSpec } from './provisioner';
import { tlsHbaConf, tlsSettings } from './tls';
import { replicationSettings } from './tuning';

const CONF = 'tenantdb.conf';
const INCLUDE_LINE = `include '${CONF}'`;
const LOG = 'postgres.log';
/** In the data directory, beside tenantdb.conf (relative paths there are read from it). */
const TLS_CERT = 'server.crt';
const TLS_KEY = 'server.key';
/** sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

export function localMaxConnections(maxInstances: number): number {
  // Each tenant database gets a few connections, plus room for the platform's admin/health work.
  return Math.max(100, maxInstances * 5 + 20);
}

export async function pgCtlStart(dir: string, runAs: RunAs | undefined): Promise<void> {
  // pg_ctl puts the postmaster in its own session and exits once it accepts connections, so the
  // server outlives this process and is no child of it.
  const { pg_ctl } = binariesFor(await majorOf(dir));
  const result = await run(
    pg_ctl,
    ['start', '-D', join(dir, 'data'), '-l', join(dir, LOG), '-w', '-t', '60', '-s'],
    { cwd: dir, runAs, timeoutMs: 90_000 },
  );
  if (result.code !== 0) {
    throw new Error(
      `pg_ctl start failed for ${dir} (exit ${result.code}): ${result.output.trim()}\n${await logTail(dir)}`,
    );
  }
}

export async function pgCtlStop(dir: string, runAs: RunAs | undefined): Promise<void> {
  const { pg_ctl } = binariesFor(await majorOf(dir));
  const result = await run(pg_ctl, ['stop', '-D', join(dir, 'data'), '-m', 'fast', '-w', '-t', '30', '-s'], {
    cwd: dir,
    runAs,
    timeoutMs: 60_000,
  });
  if (result.code !== 0) {
    throw new Error(`pg_ctl stop failed for ${dir} (exit ${result.code}): ${result.output.trim()}`);
  }
}

export async function initialise(dir: string, spec: ServerSpec, marker: Marker, runAs: RunAs | undefined) {
  const dataDir = join(dir, 'data');
  // Here rather than when the directory is made: a create that died in between left it root's.
  await chownTo(dir, runAs);
  // Whatever an interrupted initdb left is useless: the server never started, so it holds no data.
  await rm(dataDir, { recursive: true, force: true });
  const socketDir = join(dir, 'socket');
  await mkdir(socketDir, { recursive: true, mode: 0o700 });
  await chownTo(socketDir, runAs);

  const { initdb } = binariesFor(spec.postgresMajor ?? LOCAL_DEFAULT_MAJOR);
  const pwfile = join(dir, '.pwfile');
  await writeFile(pwfile, `${spec.adminPassword}\n`, { mode: 0o600 });
  try {
    await chownTo(pwfile, runAs);
    const result = await run(
      initdb,
      [
        '-D',
        dataDir,
        `--username=${spec.adminUser}`,
        `--pwfile=${pwfile}`,
        '--auth=scram-sha-256',
        '--auth-local=scram-sha-256',
        '--auth-host=scram-sha-256',
        '--encoding=UTF8',
        // Explicit, so the server does not depend on (or fail over) the worker's LANG.
        '--locale=C',
      ],
      { cwd: dir, runAs, timeoutMs: 120_000 },
    );
    if (result.code !== 0)
      throw new Error(`initdb failed for ${dir} (exit ${result.code}): ${result.output.trim()}`);
  } finally {
    await rm(pwfile, { force: true });
  }

  const socketFits = Buffer.byteLength(join(socketDir, `.s.PGSQL.${marker.port}`)) <= MAX_SOCKET_PATH;
  const settings: Record<string, string> = {
    listen_addresses: marker.host,
    port: String(marker.port),
    // A root deep enough to overflow sun_path only costs the unix socket: the platform uses TCP.
    unix_socket_directories: socketFits ? socketDir : '',
    max_connections: String(localMaxConnections(spec.maxInstances)),
    ...replicationSettings(spec.replication),
    ...spec.settings,
    ...(spec.tls ? tlsSettings({ cert: TLS_CERT, key: TLS_KEY }) : {}),
  };
  if (spec.tls) {
    // Postgres refuses a key file others can read; both owned by the user it runs as.
    await writeOwned(join(dataDir, TLS_CERT), spec.tls.certPem, runAs);
    await writeOwned(join(dataDir, TLS_KEY), spec.tls.keyPem, runAs);
    await writeOwned(join(dataDir, 'pg_hba.conf'), tlsHbaConf(spec.adminUser), runAs);
  }
  const conf = [
    `# Written by tenantdb's local driver for server ${spec.serverId}; included from postgresql.conf.`,
    ...Object.entries(settings).map(([k, v]) => `${k} = ${confString(v)}`),
    '',
  ].join('\n');
  await writeOwned(join(dataDir, CONF), conf, runAs);
  // Appended last: its presence is what marks the initialisation complete (see isInitialised).
  await appendFile(join(dataDir, 'postgresql.conf'), `\n${INCLUDE_LINE}\n`);
}

async function writeOwned(file: string, content: string, runAs: RunAs | undefined): Promise<void> {
  await writeFile(file, content, { mode: 0o600 });
  await chmod(file, 0o600); // an existing file (initdb's pg_hba.conf) keeps its mode otherwise
  await chownTo(file, runAs);
}

export async function isInitialised(dir: string): Promise<boolean> {
  try {
    const conf = await readFile(join(dir, 'data', 'postgresql.conf'), 'utf8');
    return conf.split('\n').some((line) => line.trim() === INCLUDE_LINE);
  } catch {
    return false;
  }
}

interface PostmasterState {
  running: boolean;
  pid?: number;
  reason: string;
}

/**
 * Running means: postmaster.pid names a live process that is a postgres. The last check matters
 * where nothing reaps orphans (a zombie still answers kill(pid, 0)) and where pids are reused.
 */
export async function postmasterState(dir: string): Promise<PostmasterState> {
  let content: string;
  try {
    content = await readFile(join(dir, 'data', 'postmaster.pid'), 'utf8');
  } catch {
    return { running: false, reason: 'stopped (no postmaster.pid)' };
  }
  const pid = Number.parseInt(content.split('\n')[0] ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 0) return { running: false, reason: 'unreadable postmaster.pid' };
  if (!pidAlive(pid))
    return { running: false, pid, reason: `postmaster ${pid} is gone (stale postmaster.pid)` };
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.includes('postgres')) {
    return { running: false, pid, reason: `pid ${pid} from postmaster.pid is not a running postgres` };
  }
  return { running: true, pid, reason: 'running' };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to another user (a non-root worker looking at someone else's pid).
    return errCode(err) === 'EPERM';
  }
}

export function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

async function logTail(dir: string, maxBytes = 2048): Promise<string> {
  try {
    const handle = await open(join(dir, LOG), fsConstants.O_RDONLY);
    try {
      const { size } = await handle.stat();
      const length = Math.min(size, maxBytes);
      const buf = Buffer.alloc(length);
      await handle.read(buf, 0, length, size - length);
      return buf.toString('utf8').split('\n').slice(-8).join('\n').trim();
    } finally {
      await handle.close();
    }
  } catch {
    return '';
  }
}

export async function lastFatalLogLine(dir: string): Promise<string | undefined> {
  const lines = (await logTail(dir, 8192)).split('\n');
  return lines.reverse().find((l) => /\b(FATAL|PANIC):/.test(l));
}

/** A quoted postgresql.conf value: quotes doubled, backslashes escaped (they start escapes there). */
function confString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

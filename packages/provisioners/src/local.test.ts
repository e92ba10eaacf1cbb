// The local driver against real Postgres processes: no mocks. One root per run; every server made
// here is removed in afterAll, whatever failed.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalProvisioner, type LocalProvisioner } from './local';
import { localMaxConnections } from './local.postgres';
import { PermanentProvisionError, type ServerSpec } from './provisioner';
import { waitUntilReady } from './ready';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../../..');
const password = `${randomBytes(12).toString('base64url')}'"\\$x`;
const adminUser = 'tenantdb_admin';

let root: string;
let local: LocalProvisioner;
const created = new Set<string>();
const timings: { name: string; ms: number }[] = [];

function spec(name: string, overrides: Partial<ServerSpec> = {}): ServerSpec {
  return {
    serverId: `id-${name}`,
    name,
    serverType: 'shared',
    adminUser,
    adminPassword: password,
    maxInstances: 20,
    cpuLimit: null,
    memoryLimitMb: null,
    storageSizeGb: null,
    settings: { fsync: 'off' },
    ...overrides,
  };
}

async function timedCreate(s: ServerSpec) {
  created.add(s.name);
  const started = performance.now();
  const server = await local.create(s);
  timings.push({ name: s.name, ms: Math.round(performance.now() - started) });
  return server;
}

async function query<T extends pg.QueryResultRow>(port: number, sql: string): Promise<T[]> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: adminUser, password, database: 'postgres' });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject()));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolveConnect) => {
    const socket = new Socket();
    socket.once('connect', () => {
      socket.destroy();
      resolveConnect(true);
    });
    socket.once('error', () => resolveConnect(false));
    socket.connect(port, '127.0.0.1');
  });
}

async function postmasterPid(name: string): Promise<number> {
  const content = await readFile(join(root, name, 'data', 'postmaster.pid'), 'utf8');
  return Number.parseInt(content.split('\n')[0]!, 10);
}

/** ppid and session id from /proc/<pid>/stat (the command name may contain spaces: skip past it). */
async function procStat(pid: number | 'self'): Promise<{ ppid: number; session: number }> {
  const content = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = content.slice(content.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(fields[1]), session: Number(fields[3]) };
}

/** A live postgres, not a zombie waiting for a reaper and not a reused pid. */
async function isPostgres(pid: number): Promise<boolean> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes('postgres');
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tenantdb-local-'));
  // mkdtemp makes it 0700; running as root, the postgres user must be able to traverse it.
  await chmod(root, 0o755);
  local = createLocalProvisioner({ root });
});

afterAll(async () => {
  for (const name of created) await local.remove(name).catch((err) => console.error(`remove ${name}:`, err));
  await rm(root, { recursive: true, force: true });
  console.log(
    `local driver create (initdb + start) per server: ${timings.map((t) => `${t.name} ${t.ms} ms`).join(', ')}`,
  );
});

/** Readiness after a create or start: generous for a loaded CI machine, inside the 60 s test timeout. */
const READY_MS = 30_000;

describe('local provisioner', () => {
  let port: number;
  let pid: number;

  it('creates a server that takes a password login over TCP, sized from maxInstances', async () => {
    const server = await timedCreate(spec('alpha'));
    expect(server).toMatchObject({ ref: 'alpha', host: '127.0.0.1', image: null });
    port = server.port;

    const ready = await waitUntilReady(
      { host: server.host, port, user: adminUser, password },
      { timeoutMs: READY_MS },
    );
    expect(ready.postgresVersion).toMatch(/^\d+\.\d+/);
    const [row] = await query<{ max_connections: string }>(port, 'SHOW max_connections');
    expect(Number(row!.max_connections)).toBe(localMaxConnections(20));
    expect(localMaxConnections(20)).toBe(120);
    await query(port, 'CREATE TABLE survives_adoption (id int)');

    const marker = JSON.parse(await readFile(join(root, 'alpha', 'tenantdb.json'), 'utf8'));
    expect(marker).toMatchObject({ managed_by: 'tenantdb', server_id: 'id-alpha', name: 'alpha', port });
    expect(Date.parse(marker.created_at)).not.toBeNaN();
    if (process.getuid?.() === 0) expect((await stat(join(root, 'alpha', 'data'))).uid).not.toBe(0);
    expect(await local.inspect('alpha')).toEqual({ exists: true, running: true, host: '127.0.0.1', port });
    pid = await postmasterPid('alpha');
  });

  it('runs PostgreSQL 15 by default and 17 when asked, each ready for moves (logical WAL, slots, a bounded slot WAL)', async () => {
    const [v15] = await query<{ num: string; wal: string; slots: string; keep: string }>(
      port,
      `SELECT current_setting('server_version_num') AS num, current_setting('wal_level') AS wal,
              current_setting('max_replication_slots') AS slots, current_setting('max_slot_wal_keep_size') AS keep`,
    );
    expect(Math.floor(Number(v15!.num) / 10_000)).toBe(15);
    expect(v15).toMatchObject({ wal: 'logical', slots: '10', keep: '4GB' });

    const s17 = await timedCreate(
      spec('seventeen', { postgresMajor: 17, replication: { moves: 4, walKeepSizeMb: 512 } }),
    );
    const [v17] = await query<{ num: string; wal: string; senders: string; keep: string }>(
      s17.port,
      `SELECT current_setting('server_version_num') AS num, current_setting('wal_level') AS wal,
              current_setting('max_wal_senders') AS senders, current_setting('max_slot_wal_keep_size') AS keep`,
    );
    expect(Math.floor(Number(v17!.num) / 10_000)).toBe(17);
    expect(v17).toMatchObject({ wal: 'logical', senders: '16', keep: '512MB' });
    // A restart picks the binaries of the major the data directory was made with.
    await local.stop('seventeen');
    await local.start('seventeen');
    const [again] = await query<{ num: string }>(
      s17.port,
      `SELECT current_setting('server_version_num') AS num`,
    );
    expect(Math.floor(Number(again!.num) / 10_000)).toBe(17);
    await expect(local.create(spec('sixteen', { postgresMajor: 16 }))).rejects.toThrow(
      /no PostgreSQL 16 binaries/,
    );
    await local.remove('seventeen');
    created.delete('seventeen');
  });

  it('a wrong password is not readiness, and the error does not echo it', async () => {
    const wrong = `not-${password}`;
    const err = await waitUntilReady(
      { host: '127.0.0.1', port, user: adminUser, password: wrong },
      { timeoutMs: 300, intervalMs: 100 },
    ).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/password authentication failed/);
    expect((err as Error).message).not.toContain(wrong);
  });

  it('adopts the existing server on a repeated create: same port, same process, same data', async () => {
    const again = await local.create(spec('alpha'));
    expect(again.port).toBe(port);
    expect(await postmasterPid('alpha')).toBe(pid);
    const [row] = await query<{ t: string | null }>(
      port,
      "SELECT to_regclass('survives_adoption')::text AS t",
    );
    expect(row!.t).toBe('survives_adoption');
  });

  it('refuses to reuse a name that belongs to another server id', async () => {
    await expect(local.create(spec('alpha', { serverId: 'someone-else' }))).rejects.toBeInstanceOf(
      PermanentProvisionError,
    );
    expect(JSON.parse(await readFile(join(root, 'alpha', 'tenantdb.json'), 'utf8')).server_id).toBe(
      'id-alpha',
    );
    expect((await local.inspect('alpha')).running).toBe(true);
  });

  it('stops and starts again on the same port; create adopts a stopped server by starting it', async () => {
    await local.stop('alpha');
    const stopped = await local.inspect('alpha');
    expect(stopped).toMatchObject({ exists: true, running: false, port });
    expect(stopped.reason).toBeTruthy();
    expect(await accepts(port)).toBe(false);

    await local.start('alpha');
    await waitUntilReady({ host: '127.0.0.1', port, user: adminUser, password }, { timeoutMs: READY_MS });
    expect((await local.inspect('alpha')).running).toBe(true);

    await local.stop('alpha');
    expect((await local.create(spec('alpha'))).port).toBe(port);
    const [row] = await query<{ t: string | null }>(
      port,
      "SELECT to_regclass('survives_adoption')::text AS t",
    );
    expect(row!.t).toBe('survives_adoption');
  });

  it('finishes a create that crashed after writing its marker; settings override max_connections', async () => {
    // What a worker killed right after claiming the directory leaves: a marker and nothing else.
    const dir = join(root, 'gamma');
    await mkdir(dir);
    const reserved = await freePort();
    const marker = {
      managed_by: 'tenantdb',
      server_id: 'id-gamma',
      name: 'gamma',
      host: '127.0.0.1',
      port: reserved,
      created_at: new Date().toISOString(),
    };
    created.add('gamma');
    await writeFile(join(dir, 'tenantdb.json'), JSON.stringify(marker));
    expect(await local.list()).toContainEqual({
      ref: 'gamma',
      serverId: 'id-gamma',
      name: 'gamma',
      running: false,
    });

    const server = await timedCreate(spec('gamma', { settings: { fsync: 'off', max_connections: '77' } }));
    expect(server.port).toBe(reserved);
    await waitUntilReady(
      { host: '127.0.0.1', port: reserved, user: adminUser, password },
      { timeoutMs: READY_MS },
    );
    const [row] = await query<{ max_connections: string }>(reserved, 'SHOW max_connections');
    expect(row!.max_connections).toBe('77');
  });

  it('rejects settings and refs that would escape the driver', async () => {
    await expect(local.create(spec('epsilon', { settings: { port: '5432' } }))).rejects.toBeInstanceOf(
      PermanentProvisionError,
    );
    await expect(local.inspect('../etc')).rejects.toBeInstanceOf(PermanentProvisionError);
    await expect(local.remove('..')).rejects.toBeInstanceOf(PermanentProvisionError);
  });

  it('lists only labelled servers and never touches an unlabelled directory', async () => {
    const foreign = join(root, 'not-ours');
    await mkdir(foreign);
    await writeFile(join(foreign, 'keep.txt'), 'precious');

    const listed = await local.list();
    expect(listed.map((o) => o.name).sort()).toEqual(['alpha', 'gamma']);
    expect(listed.find((o) => o.name === 'alpha')).toEqual({
      ref: 'alpha',
      serverId: 'id-alpha',
      name: 'alpha',
      running: true,
    });

    expect(await local.inspect('not-ours')).toEqual({ exists: false, running: false });
    await expect(local.remove('not-ours')).rejects.toBeInstanceOf(PermanentProvisionError);
    await expect(local.create(spec('not-ours'))).rejects.toBeInstanceOf(PermanentProvisionError);
    expect(await readFile(join(foreign, 'keep.txt'), 'utf8')).toBe('precious');
  });

  it('removes a server: process and port gone, directory deleted; removing again succeeds', async () => {
    const alphaPid = await postmasterPid('alpha');
    await local.remove('alpha');
    await expect(stat(join(root, 'alpha'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await isPostgres(alphaPid)).toBe(false);
    expect(await accepts(port)).toBe(false);
    expect(await local.inspect('alpha')).toEqual({ exists: false, running: false });
    await expect(local.remove('alpha')).resolves.toBeUndefined();
    expect((await local.list()).map((o) => o.name)).toEqual(['gamma']);
  });

  it('keeps the server running after the process that created it has exited', async () => {
    const s = spec('detached');
    created.add(s.name);
    const started = performance.now();
    // node --import tsx, not the tsx CLI: the CLI would run the script in yet another child.
    const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'local.fixture.ts')], {
      cwd: repoRoot,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let errOut = '';
    child.stdout.on('data', (c) => {
      out += c;
    });
    child.stderr.on('data', (c) => {
      errOut += c;
    });
    child.stdin.end(JSON.stringify({ root, spec: s }));
    const code = await new Promise<number | null>((r) => child.once('close', r));
    expect(code, errOut).toBe(0);
    timings.push({ name: `${s.name} (incl. node+tsx start)`, ms: Math.round(performance.now() - started) });
    const result = JSON.parse(out) as { port: number; pid: number };
    expect(result.pid).toBe(child.pid);

    const postmaster = await postmasterPid(s.name);
    expect(await isPostgres(postmaster)).toBe(true);
    const pm = await procStat(postmaster);
    // Not our child, nor the exited creator's: reparented away from both, and in its own session,
    // so a signal to our terminal's process group does not reach it.
    expect(pm.ppid).not.toBe(child.pid);
    expect(pm.ppid).not.toBe(process.pid);
    expect(pm.session).not.toBe((await procStat('self')).session);
    expect(pm.session).toBe(postmaster);

    expect((await local.inspect(s.name)).running).toBe(true);
    await waitUntilReady(
      { host: '127.0.0.1', port: result.port, user: adminUser, password },
      { timeoutMs: READY_MS },
    );
  });
});

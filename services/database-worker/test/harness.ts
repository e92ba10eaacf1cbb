// A real fleet for worker tests: a cloned catalog, Redis under a private queue prefix, a local
// driver root and a swarm fleet label of its own, database-service (createDatabaseService, in process) and N
// database-worker replicas. Everything the workers provision is a real Postgres server (a local
// process, or a swarm service when the test enables that driver); close() removes them all and
// fails the test if any secret reached the captured logs.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CatalogDb, DbServer, ServerStatus } from '@tenantdb/catalog';
import { createDatabaseService } from '@tenantdb/database-service';
import { loadConfig as loadServiceConfig } from '@tenantdb/database-service/config';
import { createLogger } from '@tenantdb/observability';
import { createLocalProvisioner, type Provisioner, type ServerSpec } from '@tenantdb/provisioners';
import {
  type ConnectionCount,
  captureLogs,
  cloneCatalog,
  startTcpProxy,
  type TcpProxy,
} from '@tenantdb/testkit';
import pg from 'pg';
import { expect, inject } from 'vitest';
import { loadConfig as loadWorkerConfig } from '../src/config';
import { createDrivers, createWorker, type DatabaseWorker } from '../src/worker';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');

export interface FleetOptions {
  /** In-process worker replicas started at once (0: start them later with addWorker). */
  replicas?: number;
  /** Worker and service environment on top of the test defaults. */
  env?: Record<string, string>;
  /** A Redis of the test's own (e.g. to restart it); the shared test Redis otherwise. */
  redisUrl?: string;
}

export type Fleet = Awaited<ReturnType<typeof startFleet>>;

/** Periodic jobs are off unless a test turns them on: tests drive jobs themselves. */
const HOUR = String(3_600_000);

export async function startFleet(opts: FleetOptions = {}) {
  const catalog = await cloneCatalog(inject('catalogAdminUrl'), inject('catalogTemplate'));
  const root = await mkdtemp(join(tmpdir(), 'tenantdb-local-'));
  await chmod(root, 0o755); // the postgres user must traverse it when the tests run as root
  const adminToken = `adm_${randomBytes(24).toString('hex')}`;
  const allocateToken = `alc_${randomBytes(24).toString('hex')}`;
  const encryptionKey = randomBytes(32).toString('base64');
  const env: Record<string, string> = {
    DATABASE_URL: catalog.url,
    REDIS_URL: opts.redisUrl ?? inject('redisUrl'),
    TENANTDB_ENCRYPTION_KEYS: `k1:${encryptionKey}`,
    TENANTDB_QUEUE_PREFIX: `test-${randomBytes(6).toString('hex')}`,
    TENANTDB_ADMIN_TOKEN: adminToken,
    TENANTDB_ALLOCATE_TOKEN: allocateToken,
    TENANTDB_RATE_LIMIT_PER_MINUTE: '1000000',
    TENANTDB_RETRY_AFTER_SECONDS: '1',
    TENANTDB_LOCAL_ROOT: root,
    // What a swarm-enabled test makes carries this label: cleaned up by close(), and invisible
    // to (and safe from) other test files sharing the swarm.
    TENANTDB_SWARM_FLEET: `test-${randomBytes(5).toString('hex')}`,
    DATABASE_WORKER_HOST: '127.0.0.1',
    DATABASE_WORKER_PORT: '0',
    TENANTDB_POOL_MAX_INSTANCES: '25',
    TENANTDB_SHARED_HEADROOM: '1',
    TENANTDB_WARM_DATABASES: '0',
    TENANTDB_HEALTH_INTERVAL_MS: HOUR,
    TENANTDB_CAPACITY_INTERVAL_MS: HOUR,
    TENANTDB_RECONCILE_INTERVAL_MS: HOUR,
    TENANTDB_CLEANUP_INTERVAL_MS: HOUR,
    TENANTDB_USAGE_SAMPLE_PERIOD_MS: HOUR,
    TENANTDB_JOB_LOCK_MS: '5000',
    TENANTDB_SHUTDOWN_DEADLINE_MS: '10000',
    // Test servers need no durability; it makes CREATE DATABASE several times faster.
    TENANTDB_SERVER_SETTINGS: 'fsync=off,synchronous_commit=off',
    LOG_LEVEL: 'debug',
    ...opts.env,
  };

  const logs = captureLogs();
  const logger = createLogger({ name: 'test-fleet', level: 'debug' }, logs.stream);
  const serviceConfig = loadServiceConfig(env);
  const workerConfig = loadWorkerConfig(env); // a bad test env fails here, before anything starts
  const service = await createDatabaseService(serviceConfig, logger.child({ process: 'database-service' }));
  const { app, db, queues, secrets } = service;
  await app.ready();
  const local = createLocalProvisioner({ root });
  // The drivers the workers use, as a test sees them (to list and clean up what they made).
  const drivers = createDrivers(workerConfig);
  const seenSecrets = new Set([adminToken, allocateToken, encryptionKey]);

  const workers: DatabaseWorker[] = [];
  const children: ChildProcess[] = [];

  async function addWorker(extraEnv: Record<string, string> = {}): Promise<DatabaseWorker> {
    const config = loadWorkerConfig({ ...env, ...extraEnv });
    const worker = await createWorker(config, logger.child({ process: `worker-${workers.length + 1}` }));
    await worker.start();
    await worker.app.listen({ host: '127.0.0.1', port: 0 });
    workers.push(worker);
    return worker;
  }

  /** A worker replica as its own process (main.ts), so a test can SIGKILL it. */
  function spawnWorker(extraEnv: Record<string, string> = {}): ChildProcess {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(repoRoot, 'services/database-worker/src/main.ts')],
      {
        cwd: repoRoot,
        env: { ...process.env, ...env, LOG_LEVEL: 'info', ...extraEnv },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child.stdout?.on('data', (c: Buffer) => logs.stream.write(c));
    child.stderr?.on('data', (c: Buffer) => logs.stream.write(c));
    children.push(child);
    return child;
  }

  for (let i = 0; i < (opts.replicas ?? 2); i++) await addWorker();

  async function api(
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    url: string,
    body?: unknown,
    token = allocateToken,
  ) {
    const response = await app.inject({
      method,
      url,
      ...(body === undefined ? {} : { payload: body as object }),
      headers: { authorization: `Bearer ${token}` },
    });
    const json = response.body ? JSON.parse(response.body) : undefined;
    if (json?.db_password) seenSecrets.add(json.db_password);
    return { status: response.statusCode, body: json, headers: response.headers };
  }

  /** Allocates like a client would: on 202 waits retry_after and asks again, until the deadline. */
  async function allocateUntilReady(ids: AllocateIds, deadlineMs = 90_000) {
    const deadline = Date.now() + deadlineMs;
    let provisioningAnswers = 0;
    for (;;) {
      const res = await api('POST', '/api/database/allocate', ids);
      if (res.status === 200) return { ...res, provisioningAnswers };
      if (res.status !== 202 && res.status !== 503) {
        throw new Error(`allocate answered ${res.status}: ${JSON.stringify(res.body)}`);
      }
      provisioningAnswers++;
      if (Date.now() > deadline) throw new Error(`still ${res.status} after ${deadlineMs} ms`);
      await sleep(Number(res.body?.retry_after ?? 1) * 1000);
    }
  }

  return {
    app,
    db,
    env,
    root,
    local,
    drivers,
    queues,
    secrets,
    logs,
    workers,
    adminToken,
    allocateToken,
    api,
    allocateUntilReady,
    addWorker,
    spawnWorker,
    seenSecrets,
    servers: (status?: ServerStatus) => listServers(db, status),
    waitForServer: (predicate: (servers: DbServer[]) => boolean, timeoutMs = 60_000) =>
      waitFor(
        async () => predicate(await listServers(db)),
        timeoutMs,
        'the fleet to reach the expected state',
      ),
    adminPassword: (server: DbServer) => secrets.decrypt(server.admin_password_enc!, server.id),
    async close() {
      for (const child of children)
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await Promise.all(workers.map((w) => w.stop().catch(() => {})));
      // Admin passwords were generated inside the workers: read them before the catalog goes.
      for (const s of await listServers(db))
        if (s.admin_password_enc) seenSecrets.add(secrets.decrypt(s.admin_password_enc, s.id));
      await service.close();
      await removeAllServers([local, ...drivers.values()]);
      await rm(root, { recursive: true, force: true });
      await catalog.drop();
      const text = logs.text();
      for (const secret of seenSecrets)
        expect(text.includes(secret), 'a secret reached the logs').toBe(false);
    },
  };
}

async function removeAllServers(drivers: Provisioner[]): Promise<void> {
  for (const driver of drivers) {
    for (const object of await driver.list().catch(() => [])) await driver.remove(object.ref).catch(() => {});
  }
}

function listServers(db: CatalogDb, status?: ServerStatus): Promise<DbServer[]> {
  return db
    .selectFrom('db_servers')
    .selectAll()
    .$if(status !== undefined, (q) => q.where('status', '=', status!))
    .orderBy('created_at')
    .execute();
}

export interface AllocateIds {
  instance_id: string;
  customer_id: string;
  plan_tier: string;
}

export function newIds(planTier = 'standard'): AllocateIds {
  return { instance_id: crypto.randomUUID(), customer_id: crypto.randomUUID(), plan_tier: planTier };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

export { canLogin } from '@tenantdb/testkit';

/** A shared pool grown by the fleet's own planner, once it is active. */
export async function activePool(f: Fleet): Promise<DbServer> {
  await f.queues.enqueue('grow-shared-capacity', { reason: 'test' });
  await f.waitForServer((servers) => servers.some((s) => s.status === 'active'));
  return (await f.servers('active'))[0]!;
}

export interface ProxiedServer {
  id: string;
  status: ServerStatus;
  proxy: TcpProxy;
}

/**
 * `count` catalog servers named `<prefix>-<i>`, each behind a TCP proxy of its own to the real
 * server `pool` (its admin credentials too), taking `statuses` in turn. Every proxy counts the
 * connections it carries, and into `all` as well; `latencyMs` each way per chunk makes work on
 * them overlap. The caller closes the proxies.
 */
export async function addProxiedServers(
  f: Fleet,
  pool: DbServer,
  opts: { prefix: string; count: number; statuses: ServerStatus[]; all: ConnectionCount; latencyMs?: number },
): Promise<ProxiedServer[]> {
  const servers: ProxiedServer[] = [];
  for (let i = 0; i < opts.count; i++) {
    const proxy = await startTcpProxy(
      { host: pool.host!, port: pool.port! },
      { latencyMs: opts.latencyMs ?? 0, shared: opts.all },
    );
    const status = opts.statuses[i % opts.statuses.length]!;
    // The real pool's admin password, encrypted for this row (a ciphertext is bound to its row).
    const id = randomUUID();
    await f.db
      .insertInto('db_servers')
      .values({
        id,
        name: `${opts.prefix}-${i}`,
        driver: 'external',
        host: '127.0.0.1',
        port: proxy.port,
        server_type: 'shared',
        max_instances: pool.max_instances,
        admin_user: pool.admin_user,
        admin_password_enc: f.secrets.encrypt(f.adminPassword(pool), id),
        admin_database: pool.admin_database,
        status,
        status_reason: status === 'error' ? 'set by the test' : null,
      })
      .execute();
    servers.push({ id, status, proxy });
  }
  return servers;
}

/** Runs reconcile once from now (its job id is single flight: a run under way is waited out first). */
export async function runReconcile(f: Fleet): Promise<void> {
  const maintenance = f.queues.queue('maintenance');
  await waitFor(
    async () => {
      const counts = await maintenance.getJobCounts('active', 'waiting');
      return counts.active! + counts.waiting! === 0;
    },
    30_000,
    'no reconcile under way',
  );
  const runs = () => f.logs.lines.filter((l) => l.includes('"msg":"reconcile done"')).length;
  const before = runs();
  await f.queues.enqueue('reconcile', {});
  await waitFor(async () => runs() > before, 60_000, 'reconcile to finish');
}

/** Runs SQL on a server as its admin. */
export async function asAdmin<T extends pg.QueryResultRow>(
  fleet: Fleet,
  server: DbServer,
  text: string,
): Promise<T[]> {
  const client = new pg.Client({
    host: server.host!,
    port: server.port!,
    user: server.admin_user!,
    password: fleet.adminPassword(server),
    database: 'postgres',
  });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

/**
 * What a driver is asked to make for a server whose catalog row never existed: an orphan, labelled
 * as tenantdb's, for the reconciler to find. Its password is no tenant's secret.
 */
export function orphanServerRequest(serverId: string, name: string): ServerSpec {
  return {
    serverId,
    name,
    serverType: 'shared',
    adminUser: 'tenantdb_admin',
    adminPassword: 'orphan-password-not-a-secret-of-any-tenant',
    maxInstances: 5,
    cpuLimit: null,
    memoryLimitMb: null,
    storageSizeGb: null,
  };
}

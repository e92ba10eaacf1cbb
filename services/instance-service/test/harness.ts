// A real instance-service for tests, in process: a cloned catalog (both schemas), Redis under a
// private queue prefix, a real database-service listening on a loopback port (createDatabaseService), real
// pool servers registered with it, instance-service's app and its job consumer. close() stops
// everything and fails the test if a token, a password or the callback secret reached the logs.
import { randomBytes } from 'node:crypto';
import { createDatabaseService } from '@tenantdb/database-service';
import { loadConfig as loadDatabaseServiceConfig } from '@tenantdb/database-service/config';
import { createLogger } from '@tenantdb/observability';
import { generatePassword } from '@tenantdb/secrets';
import { captureLogs, cloneCatalog, type RunningPostgres, startPostgres } from '@tenantdb/testkit';
import { expect, inject } from 'vitest';
import { buildApp } from '../src/app';
import type { HostResolver } from '../src/callbacks/resolve-target';
import { loadConfig } from '../src/config';
import { createDeps } from '../src/context';
import { type Consumer, startConsumer } from '../src/jobs/consumer';

export interface HarnessOptions {
  /** max_instances of each pool server registered with database-service. */
  pools?: number[];
  /** instance-service settings on top of the test defaults. */
  env?: Record<string, string>;
  /** A Redis of the test's own (to stop it); the shared test Redis otherwise. */
  redisUrl?: string;
  /** Extra instance-service replicas consuming the same queue (their own pools and connections). */
  extraReplicas?: number;
  /** How callback hosts resolve (the system resolver otherwise). */
  resolveHost?: HostResolver;
  /** database-service settings on top of the test defaults (e.g. its HTTPS certificate). */
  databaseServiceEnv?: Record<string, string>;
}

export type Harness = Awaited<ReturnType<typeof startHarness>>;

export async function startHarness(opts: HarnessOptions = {}) {
  const catalog = await cloneCatalog(inject('catalogAdminUrl'), inject('catalogTemplate'));
  const adminToken = `adm_${randomBytes(24).toString('hex')}`;
  const allocateToken = `alc_${randomBytes(24).toString('hex')}`;
  const portalToken = `ptl_${randomBytes(24).toString('hex')}`;
  const callbackSecret = `cbs_${randomBytes(24).toString('hex')}`;
  const encryptionKey = randomBytes(32).toString('base64');
  const queuePrefix = `test-${randomBytes(6).toString('hex')}`;
  const redisUrl = opts.redisUrl ?? inject('redisUrl');
  const logs = captureLogs();
  const logger = createLogger({ name: 'test', level: 'trace' }, logs.stream);
  const seenSecrets = new Set([adminToken, allocateToken, portalToken, callbackSecret, encryptionKey]);

  // database-service, listening: instance-service reaches it over HTTP like in production.
  const dbsConfig = loadDatabaseServiceConfig({
    DATABASE_URL: catalog.url,
    REDIS_URL: redisUrl,
    TENANTDB_ADMIN_TOKEN: adminToken,
    TENANTDB_ALLOCATE_TOKEN: allocateToken,
    TENANTDB_ENCRYPTION_KEYS: `k1:${encryptionKey}`,
    TENANTDB_QUEUE_PREFIX: queuePrefix,
    TENANTDB_RATE_LIMIT_PER_MINUTE: '1000000',
    // the auth tests send hundreds of wrong tokens from one address on purpose
    TENANTDB_AUTH_FAILURES_PER_MINUTE: '100000',
    TENANTDB_RETRY_AFTER_SECONDS: '1',
    ...opts.databaseServiceEnv,
  });
  const dbs = await createDatabaseService(dbsConfig, logger.child({ process: 'database-service' }));
  const { app: databaseService, db: catalogDb } = dbs;
  const databaseServiceUrl = await databaseService.listen({ host: '127.0.0.1', port: 0 });

  const servers: (RunningPostgres & { id: string })[] = [];
  async function addPoolServer(maxInstances: number) {
    const password = generatePassword();
    seenSecrets.add(password);
    const server = await startPostgres({ password, settings: { fsync: 'off' } });
    const res = await databaseService.inject({
      method: 'POST',
      url: '/api/database/admin/pools/register',
      headers: { authorization: `Bearer ${adminToken}` },
      payload: {
        name: `pool-${servers.length + 1}`,
        host: server.host,
        port: server.port,
        admin_user: server.user,
        admin_password: password,
        max_instances: maxInstances,
      },
    });
    expect(res.statusCode, res.body).toBe(201);
    const entry = Object.assign(server, { id: res.json().pool.id as string });
    servers.push(entry);
    return entry;
  }
  for (const max of opts.pools ?? [10]) await addPoolServer(max);

  const config = loadConfig({
    DATABASE_URL: catalog.url,
    REDIS_URL: redisUrl,
    TENANTDB_QUEUE_PREFIX: queuePrefix,
    TENANTDB_PORTAL_TOKEN: portalToken,
    TENANTDB_ALLOCATE_TOKEN: allocateToken,
    TENANTDB_CALLBACK_SECRET: callbackSecret,
    DATABASE_SERVICE_URL: databaseServiceUrl,
    TENANTDB_RATE_LIMIT_PER_MINUTE: '1000000',
    // the auth tests send hundreds of wrong tokens from one address on purpose
    TENANTDB_AUTH_FAILURES_PER_MINUTE: '100000',
    TENANTDB_DATABASE_SERVICE_TIMEOUT_MS: '5000',
    TENANTDB_DATABASE_SERVICE_RETRIES: '1',
    TENANTDB_JOB_LOCK_MS: '5000',
    TENANTDB_SHUTDOWN_DEADLINE_MS: '5000',
    LOG_LEVEL: 'trace', // log everything, so the secret check at close() sees everything
    // The tests' callback receivers listen on loopback, which is refused unless listed.
    TENANTDB_CALLBACK_ALLOWED_HOSTS: '127.0.0.1',
    ...opts.env,
  });
  const overrides = opts.resolveHost ? { resolveHost: opts.resolveHost } : {};
  const deps = createDeps(config, logger.child({ process: 'instance-service' }), overrides);
  const app = await buildApp(deps);
  await app.ready();
  let consumer: Consumer | undefined = await startConsumer(deps);
  const replicas: { deps: typeof deps; consumer: Consumer }[] = [];
  for (let i = 0; i < (opts.extraReplicas ?? 0); i++) {
    const replicaDeps = createDeps(config, logger.child({ process: `instance-service-${i + 2}` }), overrides);
    replicas.push({ deps: replicaDeps, consumer: await startConsumer(replicaDeps) });
  }

  async function api(
    method: 'GET' | 'POST' | 'DELETE',
    url: string,
    opts2: { body?: unknown; token?: string | null; headers?: Record<string, string> } = {},
  ) {
    const token = opts2.token === undefined ? portalToken : opts2.token;
    const response = await app.inject({
      method,
      url,
      ...(opts2.body === undefined ? {} : { payload: opts2.body as object }),
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...opts2.headers },
    });
    // biome-ignore lint/suspicious/noExplicitAny: a parsed JSON body, checked field by field
    const json: any = response.body ? JSON.parse(response.body) : undefined;
    if (json?.db_password) seenSecrets.add(json.db_password);
    return { status: response.statusCode, body: json, headers: response.headers };
  }

  async function waitForStatus(id: string, customerId: string, statuses: string[], timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = await api('GET', `/api/v1/instances/${id}?customer_id=${customerId}`);
      if (statuses.includes(res.body?.status)) return res.body;
      if (Date.now() > deadline)
        throw new Error(`instance ${id} is ${res.body?.status} after ${timeoutMs} ms, not ${statuses}`);
      await sleep(100);
    }
  }

  return {
    app,
    deps,
    config,
    databaseService,
    databaseServiceUrl,
    catalogDb,
    servers,
    logs,
    portalToken,
    adminToken,
    allocateToken,
    callbackSecret,
    api,
    waitForStatus,
    addPoolServer,
    remember: (secret: string) => seenSecrets.add(secret),
    /** A counter summed over every replica's registry, for one label set. */
    async counter(name: string, labels: Record<string, string>): Promise<number> {
      let total = 0;
      for (const registry of [deps.registry, ...replicas.map((r) => r.deps.registry)]) {
        const metric = await registry.getSingleMetric(name)?.get();
        for (const v of metric?.values ?? [])
          if (Object.entries(labels).every(([k, l]) => v.labels[k] === l)) total += v.value;
      }
      return total;
    },
    /** Stops consuming jobs (to look at what a request enqueued). */
    async stopConsumer() {
      await consumer?.close();
      consumer = undefined;
    },
    async startConsumer() {
      consumer ??= await startConsumer(deps);
    },
    /** Jobs of instance-service's queues (instances, callbacks) in any state. */
    async queuedJobs() {
      const states = ['waiting', 'delayed', 'active', 'prioritized', 'failed'] as const;
      const jobs = [
        ...(await deps.queues.queue('instances').getJobs([...states])),
        ...(await deps.queues.queue('callbacks').getJobs([...states])),
      ];
      return jobs.filter((j) => j.name !== 'sweep-instances').map((j) => ({ id: j.id, name: j.name }));
    },
    async close() {
      for (const r of replicas) {
        await r.consumer.close();
        await r.deps.queues.close();
        await r.deps.db.destroy();
      }
      await consumer?.close();
      await app.close();
      await deps.queues.close();
      await deps.db.destroy();
      await dbs.close();
      await Promise.all(servers.map((s) => s.destroy()));
      await catalog.drop();
      const text = logs.text();
      for (const secret of seenSecrets)
        expect(text.includes(secret), 'a secret reached the logs').toBe(false);
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function newInstance(overrides: Record<string, unknown> = {}) {
  return {
    customer_id: crypto.randomUUID(),
    name: `instance ${randomBytes(3).toString('hex')}`,
    plan_tier: 'standard',
    ...overrides,
  };
}

/** Logs in with credentials; true when SELECT 1 works. */
export { canLogin } from '@tenantdb/testkit';

/** The signature headers of a received callback, as verifyCallback takes them. */
export function signedWith(r: { headers: Record<string, string | string[] | undefined> }) {
  return {
    signature: r.headers['x-tenantdb-signature'] as string | undefined,
    timestamp: r.headers['x-tenantdb-timestamp'] as string | undefined,
  };
}

// A real database-service for tests: a cloned catalog, the shared test Redis under a private
// queue prefix, real pool servers, and every secret it sees remembered so the captured logs can
// be checked for them.
import { randomBytes } from 'node:crypto';
import { createLogger } from '@tenantdb/observability';
import { generatePassword } from '@tenantdb/secrets';
import { captureLogs, cloneCatalog, type RunningPostgres, startPostgres } from '@tenantdb/testkit';
import pg from 'pg';
import { expect, inject } from 'vitest';
import { createDatabaseService } from '../src/app';
import { loadConfig } from '../src/config';

export interface HarnessOptions {
  /** max_instances of each pool server to start and register. */
  pools?: number[];
  env?: Record<string, string>;
}

export type Harness = Awaited<ReturnType<typeof startHarness>>;

export async function startHarness(opts: HarnessOptions = {}) {
  const catalog = await cloneCatalog(inject('catalogAdminUrl'), inject('catalogTemplate'));
  const adminToken = `adm_${randomBytes(24).toString('hex')}`;
  const allocateToken = `alc_${randomBytes(24).toString('hex')}`;
  const encryptionKey = randomBytes(32).toString('base64');
  const queuePrefix = `test-${randomBytes(6).toString('hex')}`;
  const config = loadConfig({
    DATABASE_URL: catalog.url,
    REDIS_URL: inject('redisUrl'),
    TENANTDB_ADMIN_TOKEN: adminToken,
    TENANTDB_ALLOCATE_TOKEN: allocateToken,
    TENANTDB_ENCRYPTION_KEYS: `k1:${encryptionKey}`,
    TENANTDB_QUEUE_PREFIX: queuePrefix,
    TENANTDB_RATE_LIMIT_PER_MINUTE: '100000',
    // the auth tests send hundreds of wrong tokens from one address on purpose
    TENANTDB_AUTH_FAILURES_PER_MINUTE: '100000',
    LOG_LEVEL: 'trace', // log everything, so the secret check at close() sees everything
    ...opts.env,
  });
  const logs = captureLogs();
  const logger = createLogger({ name: 'database-service', level: config.LOG_LEVEL }, logs.stream);
  const service = await createDatabaseService(config, logger);
  const { app, db, queues, secrets } = service;
  await app.ready();

  const seenSecrets = new Set<string>([adminToken, allocateToken, encryptionKey]);
  const servers: (RunningPostgres & { id: string; name: string })[] = [];

  async function api(
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    url: string,
    body?: unknown,
    token: string | null = allocateToken,
  ) {
    const response = await app.inject({
      method,
      url,
      ...(body === undefined ? {} : { payload: body as object }),
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    const json = response.body ? JSON.parse(response.body) : undefined;
    if (json?.db_password) seenSecrets.add(json.db_password);
    return { status: response.statusCode, body: json, headers: response.headers };
  }

  async function addPoolServer(maxInstances: number, name = `pool-${servers.length + 1}`) {
    const password = generatePassword();
    seenSecrets.add(password);
    const server = await startPostgres({ password, settings: { fsync: 'off' } });
    const res = await api(
      'POST',
      '/api/database/admin/pools/register',
      {
        name,
        host: server.host,
        port: server.port,
        admin_user: server.user,
        admin_password: password,
        max_instances: maxInstances,
      },
      adminToken,
    );
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const entry = Object.assign(server, { id: res.body.pool.id as string, name });
    servers.push(entry);
    return entry;
  }

  for (const max of opts.pools ?? []) await addPoolServer(max);

  return {
    app,
    db,
    config,
    queues,
    secrets,
    logs,
    servers,
    adminToken,
    allocateToken,
    api,
    addPoolServer,
    seenSecrets,
    /** Error lines the service logged (a 500 says only "internal error"; these say why). */
    errorLogs: () => logs.lines.filter((line) => /"level":(50|60)/.test(line)),
    /** Registers a secret that must never reach the logs. */
    remember: (secret: string) => seenSecrets.add(secret),
    async close() {
      await service.close();
      await Promise.all(servers.map((s) => s.destroy()));
      await catalog.drop();
      const text = logs.text();
      for (const secret of seenSecrets)
        expect(text.includes(secret), 'a secret reached the logs').toBe(false);
    },
  };
}

export function newIds(planTier = 'standard') {
  return { instance_id: crypto.randomUUID(), customer_id: crypto.randomUUID(), plan_tier: planTier };
}

/** Logs in as a tenant with the credentials allocate returned. */
export async function tenantClient(c: {
  db_host: string;
  db_port: number;
  db_name: string;
  db_user: string;
  db_password: string;
}): Promise<pg.Client> {
  const client = new pg.Client({
    host: c.db_host,
    port: c.db_port,
    database: c.db_name,
    user: c.db_user,
    password: c.db_password,
    connectionTimeoutMillis: 5_000,
  });
  await client.connect();
  return client;
}

export { canLogin } from '@tenantdb/testkit';

/** Runs one query on a pool server as its admin. */
export async function onServer<T extends pg.QueryResultRow>(
  server: RunningPostgres,
  text: string,
  values: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: server.url() });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

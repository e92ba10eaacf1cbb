// instance-service beside a test fleet (harness.ts startFleet): its app and job consumer in process,
// on the fleet's catalog and queue prefix, reaching the fleet's database-service over HTTP as in
// production, so a move's address notice (database-worker → deliver-tenant-event) reaches it, and
// a real callback receiver that checks every signature.
import { randomBytes } from 'node:crypto';
import { buildApp } from '@tenantdb/instance-service';
import { loadConfig } from '@tenantdb/instance-service/config';
import { startConsumer } from '@tenantdb/instance-service/consumer';
import { createDeps } from '@tenantdb/instance-service/context';
import { createLogger } from '@tenantdb/observability';
import { type CallbackReceiver, startCallbackReceiver } from '@tenantdb/testkit';
import { type Fleet, sleep } from './harness';

export type Portal = Awaited<ReturnType<typeof startPortal>>;

export async function startPortal(f: Fleet) {
  const portalToken = `ptl_${randomBytes(24).toString('hex')}`;
  const callbackSecret = `cbs_${randomBytes(24).toString('hex')}`;
  for (const s of [portalToken, callbackSecret]) f.seenSecrets.add(s);
  const databaseServiceUrl = await f.app.listen({ host: '127.0.0.1', port: 0 });
  const config = loadConfig({
    DATABASE_URL: f.env.DATABASE_URL!,
    REDIS_URL: f.env.REDIS_URL!,
    TENANTDB_QUEUE_PREFIX: f.env.TENANTDB_QUEUE_PREFIX!,
    TENANTDB_PORTAL_TOKEN: portalToken,
    TENANTDB_ALLOCATE_TOKEN: f.allocateToken,
    TENANTDB_DATABASE_SERVICE_ADMIN_TOKEN: f.adminToken,
    TENANTDB_CALLBACK_SECRET: callbackSecret,
    DATABASE_SERVICE_URL: databaseServiceUrl,
    TENANTDB_RATE_LIMIT_PER_MINUTE: '1000000',
    TENANTDB_DATABASE_SERVICE_TIMEOUT_MS: '10000',
    TENANTDB_DATABASE_SERVICE_RETRIES: '1',
    TENANTDB_JOB_LOCK_MS: '5000',
    TENANTDB_SHUTDOWN_DEADLINE_MS: '5000',
    TENANTDB_CALLBACK_ALLOWED_HOSTS: '127.0.0.1',
    LOG_LEVEL: 'debug',
  });
  const logger = createLogger({ name: 'test-portal', level: 'debug' }, f.logs.stream);
  const deps = createDeps(config, logger.child({ process: 'instance-service' }));
  const app = await buildApp(deps);
  await app.ready();
  const consumer = await startConsumer(deps);
  const receiver: CallbackReceiver = await startCallbackReceiver({ secret: callbackSecret });

  async function api(method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown, token = portalToken) {
    const response = await app.inject({
      method,
      url,
      ...(body === undefined ? {} : { payload: body as object }),
      headers: { authorization: `Bearer ${token}` },
    });
    // biome-ignore lint/suspicious/noExplicitAny: a parsed JSON body, checked field by field
    const json: any = response.body ? JSON.parse(response.body) : undefined;
    if (json?.db_password) f.seenSecrets.add(json.db_password);
    return { status: response.statusCode, body: json };
  }

  return {
    deps,
    api,
    receiver,
    /** A ready instance of a new customer, with its callback going to the receiver. */
    async readyInstance(planTier = 'standard') {
      const customerId = crypto.randomUUID();
      const created = await api('POST', '/api/v1/instances', {
        customer_id: customerId,
        name: `plan ${randomBytes(3).toString('hex')}`,
        plan_tier: planTier,
        callback_url: receiver.url,
      });
      if (created.status !== 202) throw new Error(`create answered ${created.status}`);
      const id = created.body.id as string;
      const q = `?customer_id=${customerId}`;
      const deadline = Date.now() + 90_000;
      for (;;) {
        const res = await api('GET', `/api/v1/instances/${id}${q}`);
        if (res.body?.status === 'ready') break;
        if (res.body?.status === 'failed' || Date.now() > deadline)
          throw new Error(`instance is ${res.body?.status}: ${res.body?.error}`);
        await sleep(200);
      }
      return { id, customerId, q };
    },
    async close() {
      await consumer.close();
      await app.close();
      await receiver.close();
      await deps.queues.close();
      await deps.db.destroy();
    },
  };
}

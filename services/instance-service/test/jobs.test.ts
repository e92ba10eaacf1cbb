// The jobs behind the API, in process against real database-service, Postgres and Redis:
// wait-for-database ends ready or failed (a refused plan, the bound reached with no capacity),
// the sweep picks up an instance whose job was lost, callbacks are delivered once and signed, and
// a create while Redis is down answers 503 and leaves nothing behind.
import { InstanceCallback } from '@tenantdb/contracts';
import { startCallbackReceiver, startRedis } from '@tenantdb/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyCallback } from '../src/callbacks/signature';
import { sweepInstances } from '../src/jobs/sweep';
import { type Harness, newInstance, signedWith, sleep, startHarness } from './harness';

let h: Harness | undefined;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await h?.close();
  h = undefined;
});

/** A receiver checking the harness's signature that answers each instance's first `failFirst` requests 500. */
async function receiver(failFirst: number) {
  const r = await startCallbackReceiver({
    answers: Array.from({ length: failFirst }, () => ({ status: 500 })),
    secret: h!.callbackSecret,
  });
  cleanups.push(() => r.close());
  return r;
}

describe('wait-for-database', () => {
  it('a plan database-service refuses: failed with its reason, and the callback says so', async () => {
    h = await startHarness();
    const hooks = await receiver(0);
    // A create refuses an unknown plan at once (plans.test.ts); a plan removed after the create
    // is what reaches the job: the row as such a create left it.
    const body = newInstance({ plan_tier: 'no-such-plan', callback_url: hooks.url });
    const row = await h.deps.repo.insert({ ...body, request_digest: null });
    await h.deps.queues.enqueue('wait-for-database', { instance_id: row.id });
    const created = { body: { id: row.id } };
    const failed = await h.waitForStatus(created.body.id, body.customer_id, ['failed']);
    expect(failed.error).toMatch(/refused the allocation \(400\).*unknown plan_tier "no-such-plan"/);
    await waitUntil(() => hooks.for(created.body.id).length === 1);
    const [hook] = hooks.for(created.body.id);
    const payload = InstanceCallback.parse(JSON.parse(hook!.body));
    expect(payload).toMatchObject({
      event: 'instance.failed',
      instance: { id: created.body.id, status: 'failed' },
    });
    expect(payload.instance.error).toBe(failed.error);
    expect(verifyCallback(h.callbackSecret, hook!.body, signedWith(hook!))).toBe(true);
  });

  it('no room and nothing provisioning it: the instance waits, then fails at the bound with the last answer', async () => {
    h = await startHarness({ pools: [1], env: { TENANTDB_DATABASE_WAIT_MS: '3000' } });
    const first = newInstance();
    const a = await h.api('POST', '/api/v1/instances', { body: first });
    await h.waitForStatus(a.body.id, first.customer_id, ['ready']);

    const body = newInstance();
    const started = Date.now();
    const created = await h.api('POST', '/api/v1/instances', { body });
    const waiting = await h.waitForStatus(created.body.id, body.customer_id, ['waiting_for_database']);
    expect(waiting.wait_reason).toMatch(/no shared pool has room/);
    const failed = await h.waitForStatus(created.body.id, body.customer_id, ['failed'], 15_000);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(2_900);
    expect(took).toBeLessThan(8_000);
    expect(failed.error).toBe(
      'no database within 3 s (TENANTDB_DATABASE_WAIT_MS); last answer: no shared pool has room; more capacity is being provisioned',
    );
    expect(failed.wait_reason).toMatch(/no shared pool has room/);
    const metrics = (await h.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(
      /tenantdb_wait_for_database_total\{outcome="provisioning",service="instance-service"\} [1-9]/,
    );
    expect(metrics).toMatch(
      /tenantdb_wait_for_database_total\{outcome="failed",service="instance-service"\} 1/,
    );
  });

  it('an instance whose job was lost is picked up by the sweep and becomes ready', async () => {
    h = await startHarness({ env: { TENANTDB_INSTANCE_SWEEP_INTERVAL_MS: '1000' } });
    // A row as a create leaves it when the enqueue after commit never reached Redis.
    const orphan = await h.deps.repo.insert({ ...newInstance(), request_digest: null });
    expect(orphan.status).toBe('pending');
    const ready = await h.waitForStatus(orphan.id, orphan.customer_id, ['ready'], 20_000);
    expect(ready.db_name).toMatch(/^tdb_/);
  });
});

describe('sweep-instances', () => {
  it('re-enqueues an unsettled instance however many callbacks are pending (they do not share one limit)', async () => {
    h = await startHarness();
    await h.stopConsumer(); // look at what the sweep enqueues, nothing runs it
    const hourAgo = new Date(Date.now() - 3_600_000);
    // More undeliverable callbacks than the sweep reads at once, all older than the orphan.
    const pending = Array.from({ length: 1001 }, (_, i) => ({
      ...newInstance(),
      status: 'ready' as const,
      db_host: '127.0.0.1',
      db_port: 5432,
      db_name: `tdb_backlog_${i}`,
      db_user: `tdb_backlog_${i}_u`,
      callback_url: 'https://hooks.example.com/down',
      callback_status: 'pending' as const,
      ready_at: hourAgo,
      updated_at: hourAgo,
      created_at: hourAgo,
    }));
    await h.deps.db.insertInto('instances').values(pending).execute();
    // A create whose job never reached Redis.
    const orphan = await h.deps.repo.insert({ ...newInstance(), request_digest: null });
    await sweepInstances(h.deps)({}, { jobId: 'sweep-test', log: h.deps.logger });
    const jobs = await h.queuedJobs();
    expect(jobs.filter((j) => j.name === 'wait-for-database').map((j) => j.id)).toEqual([
      `wait-for-database-${orphan.id}`,
    ]);
    expect(jobs.filter((j) => j.name === 'deliver-callback').length).toBeGreaterThanOrEqual(1000);
  });
});

describe('callbacks', () => {
  it('exactly one accepted POST per instance, signed over the body, also after a 500 the first time (three replicas consuming)', async () => {
    h = await startHarness({ extraReplicas: 2 });
    const hooks = await receiver(1);
    const bodies = Array.from({ length: 6 }, () => newInstance({ callback_url: hooks.url }));
    const created = await Promise.all(bodies.map((body) => h!.api('POST', '/api/v1/instances', { body })));
    for (const [i, c] of created.entries())
      await h.waitForStatus(c.body.id, bodies[i]!.customer_id, ['ready']);
    await waitUntil(() => created.every((c) => hooks.for(c.body.id).some((r) => r.answered === 200)));
    await sleep(2_500); // time for a wrong extra delivery to show up
    for (const c of created) {
      const requests = hooks.for(c.body.id);
      expect(requests.map((r) => r.answered)).toEqual([500, 200]);
      // Every attempt sends the same bytes, with a valid signature over them.
      expect(requests[0]!.body).toBe(requests[1]!.body);
      for (const r of requests) {
        expect(verifyCallback(h.callbackSecret, r.body, signedWith(r))).toBe(true);
        expect(verifyCallback('another-secret-of-enough-length', r.body, signedWith(r))).toBe(false);
        expect(r.headers['content-type']).toBe('application/json');
        expect(r.headers['x-tenantdb-event']).toBe('instance.ready');
      }
      const payload = InstanceCallback.parse(JSON.parse(requests[1]!.body));
      expect(payload).toMatchObject({
        event: 'instance.ready',
        instance: { id: c.body.id, status: 'ready' },
      });
      expect(requests[1]!.body).not.toMatch(/password/);
      const row = await h.deps.repo.findById(c.body.id);
      expect(row).toMatchObject({ callback_status: 'delivered', callback_attempts: 2 });
    }
    expect(await h.counter('tenantdb_callback_deliveries_total', { result: 'delivered' })).toBe(6);
    expect(await h.counter('tenantdb_callback_deliveries_total', { result: 'retry' })).toBe(6);
  });

  it('gives up after TENANTDB_CALLBACK_MAX_ATTEMPTS and says why', async () => {
    h = await startHarness({ env: { TENANTDB_CALLBACK_MAX_ATTEMPTS: '2' } });
    const hooks = await receiver(100);
    const body = newInstance({ callback_url: hooks.url });
    const created = await h.api('POST', '/api/v1/instances', { body });
    await waitUntil(async () => (await h!.deps.repo.findById(created.body.id))?.callback_status === 'failed');
    expect(hooks.for(created.body.id).map((r) => r.answered)).toEqual([500, 500]);
    const instance = await h.api(
      'GET',
      `/api/v1/instances/${created.body.id}?customer_id=${body.customer_id}`,
    );
    expect(instance.body).toMatchObject({ status: 'ready', callback_status: 'failed' });
    const row = await h.deps.repo.findById(created.body.id);
    expect(row?.callback_error).toBe('gave up after 2 attempts: the receiver answered 500');
  });

  it('only to allowed hosts when TENANTDB_CALLBACK_ALLOWED_HOSTS is set', async () => {
    h = await startHarness({
      env: { TENANTDB_CALLBACK_ALLOWED_HOSTS: 'hooks.example.com,*.portal.example.net' },
    });
    const refused = await h.api('POST', '/api/v1/instances', {
      body: newInstance({ callback_url: 'http://127.0.0.1:9/x' }),
    });
    expect(refused.status).toBe(400);
    expect(refused.body.message).toMatch(/TENANTDB_CALLBACK_ALLOWED_HOSTS/);
    const allowed = await h.api('POST', '/api/v1/instances', {
      body: newInstance({ callback_url: 'https://a.portal.example.net/hooks' }),
    });
    expect(allowed.status).toBe(202);
  });
});

describe('Redis down', () => {
  it('a create answers 503 at once and leaves no instance behind', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    h = await startHarness({ redisUrl: redis.url });
    await redis.stop();
    const started = Date.now();
    const body = newInstance();
    const res = await h.api('POST', '/api/v1/instances', {
      body,
      headers: { 'idempotency-key': 'k-redis-down' },
    });
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBeDefined();
    expect(Date.now() - started).toBeLessThan(10_000);
    const rows = await h.deps.db.selectFrom('instances').select('id').execute();
    expect(rows).toEqual([]);
    expect((await h.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(503);

    await redis.start();
    // The client retries with the same key, as it would after any 503, until Redis is back.
    let retried = res;
    await waitUntil(async () => {
      retried = await h!.api('POST', '/api/v1/instances', {
        body,
        headers: { 'idempotency-key': 'k-redis-down' },
      });
      return retried.status !== 503;
    });
    expect(retried.status).toBe(202);
    await h.waitForStatus(retried.body.id, body.customer_id, ['ready'], 30_000);
  });
});

async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(100);
  }
}

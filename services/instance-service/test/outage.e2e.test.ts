// Show 2 of issue #5, with `pnpm dev`'s own wiring (real processes): database-service goes away
// during a signup. Down for a while → the instance waits and becomes ready once it is back. Down
// past the bound → failed with the reason, nothing allocated. Frozen (SIGSTOP) past the bound →
// failed; once it thaws, the allocate requests that were stuck in it land after the failure and
// the database they allocate is released.
import { type CallbackReceiver, startCallbackReceiver } from '@tenantdb/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyCallback } from '../src/callbacks/signature';
import { type E2EStack, sleep, startE2EStack } from './e2e-stack';
import { canLogin, newInstance, signedWith } from './harness';

// Long enough for database-service to be restarted (a fresh node + tsx process) on a busy machine
// within it; the "past the bound" cases wait it out.
const BOUND_MS = 30_000;
let e: E2EStack;
let hooks: CallbackReceiver;
beforeAll(async () => {
  e = await startE2EStack({
    TENANTDB_DATABASE_WAIT_MS: String(BOUND_MS),
    TENANTDB_DATABASE_SERVICE_TIMEOUT_MS: '1000',
    TENANTDB_DATABASE_SERVICE_RETRIES: '1',
    TENANTDB_POOL_MAX_INSTANCES: '10',
    TENANTDB_SHARED_HEADROOM: '1',
    // The frozen case needs the stuck requests to reach their handler after the thaw (the worst
    // case: a database made for a failed instance). With the rate-limit counters in Redis they did
    // not (observed: no reservation at all after the thaw; the cause is not pinned down, likely the
    // callers' closed sockets noticed while the limit hook awaits Redis), so this stack counts in
    // memory, where they do.
    TENANTDB_RATE_LIMIT_STORE: 'memory',
  });
  hooks = await startCallbackReceiver({ secret: e.stack.secrets.callbackSecret });
  // A pool first, so that only database-service's absence decides.
  const deadline = Date.now() + 60_000;
  while (!(await e.servers()).some((s) => s.status === 'active')) {
    if (Date.now() > deadline) throw new Error('no pool became active');
    await sleep(250);
  }
}, 120_000);
afterAll(async () => {
  await e?.close();
  await hooks?.close();
});

const databaseService = () => e.stack.process('database-service');
const instanceRow = (id: string) =>
  e.instancesDb.selectFrom('instances').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

describe('database-service away during a signup', () => {
  it('down for a while: the instance waits, and is ready once database-service is back', {
    timeout: 90_000,
  }, async () => {
    await databaseService().stop();
    const body = newInstance();
    const created = await e.api('POST', '/api/v1/instances', body);
    expect(created.status).toBe(202);
    const waiting = await e.waitForStatus(
      created.body.id,
      body.customer_id,
      ['waiting_for_database'],
      10_000,
    );
    expect(waiting.wait_reason).toMatch(/database-service unreachable \(allocate\): ECONNREFUSED/);
    await sleep(3_000);
    expect(
      (await e.api('GET', `/api/v1/instances/${created.body.id}?customer_id=${body.customer_id}`)).body
        .status,
    ).toBe('waiting_for_database');

    await databaseService().start();
    const ready = await e.waitForStatus(created.body.id, body.customer_id, ['ready', 'failed'], BOUND_MS);
    expect(ready.status).toBe('ready');
    expect(ready.wait_reason).toBeNull();
    const creds = await e.api(
      'POST',
      `/api/v1/instances/${created.body.id}/credentials?customer_id=${body.customer_id}`,
    );
    expect(await canLogin(creds.body)).toBe(true);
  });

  it('down past the bound: failed with the reason, nothing allocated, the callback says so', {
    timeout: 120_000,
  }, async () => {
    await databaseService().stop();
    const body = newInstance({ callback_url: hooks.url });
    const created = await e.api('POST', '/api/v1/instances', body);
    const failed = await e.waitForStatus(
      created.body.id,
      body.customer_id,
      ['failed', 'ready'],
      BOUND_MS + 10_000,
    );
    expect(failed.status).toBe('failed');
    expect(failed.error).toBe(
      'no database within 30 s (TENANTDB_DATABASE_WAIT_MS); last answer: database-service unreachable (allocate): ECONNREFUSED',
    );
    expect(new Date(failed.failed_at).getTime() - new Date(failed.created_at).getTime()).toBeLessThan(
      BOUND_MS + 5_000,
    );
    // The callback does not wait for database-service.
    await waitUntil(async () => hooks.for(created.body.id).length > 0, 10_000, 'the callback');
    const [hook] = hooks.for(created.body.id);
    expect(JSON.parse(hook!.body)).toMatchObject({
      event: 'instance.failed',
      instance: { id: created.body.id, status: 'failed', error: failed.error },
    });
    expect(verifyCallback(e.stack.secrets.callbackSecret, hook!.body, signedWith(hook!))).toBe(true);

    await databaseService().start();
    // release-database checks after the settle time that nothing was allocated for it.
    await waitUntil(
      async () => (await instanceRow(created.body.id)).release_verified_at !== null,
      30_000,
      'the release check',
    );
    const allocation = await e.databaseService('GET', `/api/database/allocations/${created.body.id}`);
    expect(allocation.status).toBe(404);
    expect((await instanceRow(created.body.id)).status).toBe('failed');
    expect(hooks.for(created.body.id)).toHaveLength(1);
  });

  it('frozen past the bound: failed; the allocation that lands after it thaws is released', {
    timeout: 150_000,
  }, async () => {
    databaseService().signal('SIGSTOP');
    let thawed = false;
    try {
      const body = newInstance();
      const created = await e.api('POST', '/api/v1/instances', body);
      const failed = await e.waitForStatus(
        created.body.id,
        body.customer_id,
        ['failed', 'ready'],
        BOUND_MS + 15_000,
      );
      expect(failed.status).toBe('failed');
      expect(failed.error).toMatch(
        /^no database within 30 s .*last answer: database-service unreachable \(allocate\): no answer within 1000 ms$/,
      );
      databaseService().signal('SIGCONT');
      thawed = true;

      // The allocate requests that were stuck in the frozen process are served now: a database
      // is made for an instance that has already failed …
      const id = created.body.id as string;
      const reserved = () =>
        e.catalog
          .selectFrom('audit_events')
          .select(['action', 'occurred_at'])
          .where('instance_id', '=', id)
          .orderBy('id')
          .execute();
      await waitUntil(
        async () => (await reserved()).some((a) => a.action === 'allocation.release'),
        60_000,
        'the late allocation to be released',
      );
      const actions = await reserved();
      const reserve = actions.find((a) => a.action === 'allocation.reserve')!;
      expect(reserve.occurred_at.getTime()).toBeGreaterThan(new Date(failed.failed_at).getTime());
      // … and instance-service releases it: no live allocation, no database on the server.
      const allocation = await e.databaseService('GET', `/api/database/allocations/${id}`);
      expect(allocation.body.status).toBe('released');
      const server = (await e.servers()).find((s) => s.id === allocation.body.db_server_id)!;
      expect(
        await e.asAdmin(server, 'SELECT 1 FROM pg_database WHERE datname = $1', [allocation.body.db_name]),
      ).toEqual([]);
      await waitUntil(
        async () => (await instanceRow(id)).release_verified_at !== null,
        30_000,
        'the release check',
      );
      expect((await instanceRow(id)).status).toBe('failed');
      const live = await e.catalog
        .selectFrom('tenant_databases')
        .select('status')
        .where('instance_id', '=', id)
        .where('status', 'in', ['creating', 'ready', 'releasing'])
        .execute();
      expect(live).toEqual([]);
    } finally {
      if (!thawed) databaseService().signal('SIGCONT');
    }
  });
});

// Where callbacks may go, against a real instance-service: refused targets at create (400,
// nothing created), a host name resolved once at delivery with every answer checked, and the
// connection made to the checked address (a DNS answer that changes — rebinding — is not used).
import { startCallbackReceiver } from '@tenantdb/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import type { HostResolver } from '../src/callbacks/resolve-target';
import { verifyCallback } from '../src/callbacks/signature';
import { type Harness, newInstance, signedWith, sleep, startHarness } from './harness';

let h: Harness | undefined;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await h?.close();
  h = undefined;
});

async function receiver(opts: Parameters<typeof startCallbackReceiver>[0] = {}) {
  const r = await startCallbackReceiver({ secret: h?.callbackSecret, ...opts });
  cleanups.push(() => r.close());
  return r;
}

async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(100);
  }
}

describe('callback targets at create', () => {
  it('with the default (empty) allow-list, loopback, private and reserved targets are 400 and nothing is created', async () => {
    h = await startHarness({ env: { TENANTDB_CALLBACK_ALLOWED_HOSTS: '' } });
    for (const url of [
      'http://127.0.0.1:8005/api/database/admin/pools',
      'http://2130706433:8005/api/database/admin/pools', // decimal 127.0.0.1
      'http://017700000001/', // octal
      'http://0x7f.0.0.1/', // hex
      'http://127.1:8005/', // short form
      'http://[::1]:8005/',
      'http://[::ffff:127.0.0.1]:8005/', // IPv4-mapped
      'http://169.254.169.254/latest/meta-data/',
      'http://10.0.0.1/',
      'http://100.64.0.1/', // CGNAT
      'http://[fd00::1]/', // ULA
      'http://0.0.0.0:8005/',
      'http://localhost:8005/',
    ]) {
      const res = await h.api('POST', '/api/v1/instances', { body: newInstance({ callback_url: url }) });
      expect(res.status, `${url}: ${JSON.stringify(res.body)}`).toBe(400);
      expect(res.body.message, url).toMatch(/callback_url points at/);
    }
    expect(await h.deps.db.selectFrom('instances').select('id').execute()).toEqual([]);
    expect(await h.queuedJobs()).toEqual([]);
    // A public address is still fine.
    const ok = await h.api('POST', '/api/v1/instances', {
      body: newInstance({ callback_url: 'https://93.184.216.34/hooks' }),
    });
    expect(ok.status).toBe(202);
  });
});

describe('callback delivery', () => {
  it('a host name resolving to a private address: refused, failed with the reason, nothing sent', async () => {
    const asked: string[] = [];
    const resolveHost: HostResolver = async (name) => {
      asked.push(name);
      return [{ address: '127.0.0.1', family: 4 }];
    };
    h = await startHarness({ env: { TENANTDB_CALLBACK_ALLOWED_HOSTS: '' }, resolveHost });
    const local = await receiver();
    const body = newInstance({ callback_url: `http://hooks.portal.test:${local.port}/hooks` });
    const created = await h.api('POST', '/api/v1/instances', { body });
    expect(created.status).toBe(202);
    await waitUntil(async () => (await h!.deps.repo.findById(created.body.id))?.callback_status === 'failed');
    const row = await h.deps.repo.findById(created.body.id);
    expect(row?.status).toBe('ready');
    expect(row?.callback_error).toMatch(/^hooks\.portal\.test resolves to 127\.0\.0\.1: .*loopback, private/);
    expect(asked).toEqual(['hooks.portal.test']);
    await sleep(500);
    expect(local.received).toEqual([]);
    expect(await h.counter('tenantdb_callback_deliveries_total', { result: 'failed' })).toBe(1);
  });

  it('a name with one public and one private answer is refused too (every answer is checked)', async () => {
    const resolveHost: HostResolver = async () => [
      { address: '93.184.216.34', family: 4 },
      { address: '10.0.0.7', family: 4 },
    ];
    h = await startHarness({ env: { TENANTDB_CALLBACK_ALLOWED_HOSTS: '' }, resolveHost });
    const body = newInstance({ callback_url: 'https://hooks.portal.test/hooks' });
    const created = await h.api('POST', '/api/v1/instances', { body });
    await waitUntil(async () => (await h!.deps.repo.findById(created.body.id))?.callback_status === 'failed');
    expect((await h.deps.repo.findById(created.body.id))?.callback_error).toMatch(/resolves to 10\.0\.0\.7/);
  });

  it('DNS rebinding: the connection goes to the address that was checked, not to a later answer', async () => {
    // The allowed receiver on 127.0.0.2 (allowed by a CIDR entry); a local service on 127.0.0.1,
    // same port, which a second DNS answer points at.
    const allowed = await receiver({ host: '127.0.0.2' });
    const local = await receiver({ port: allowed.port });
    let calls = 0;
    const resolveHost: HostResolver = async () => {
      calls++;
      return [{ address: calls === 1 ? '127.0.0.2' : '127.0.0.1', family: 4 }];
    };
    h = await startHarness({ env: { TENANTDB_CALLBACK_ALLOWED_HOSTS: '127.0.0.2/32' }, resolveHost });
    const body = newInstance({ callback_url: `http://rebind.portal.test:${allowed.port}/hooks` });
    const created = await h.api('POST', '/api/v1/instances', { body });
    expect(created.status).toBe(202);
    await waitUntil(
      async () => (await h!.deps.repo.findById(created.body.id))?.callback_status === 'delivered',
    );
    expect(calls).toBe(1); // resolved once for the attempt
    expect(local.received).toEqual([]);
    const [hook] = allowed.for(created.body.id);
    expect(hook?.answered).toBe(200);
    // The Host header is the URL's host: the request is to the name, over the pinned address.
    expect(hook?.headers.host).toBe(`rebind.portal.test:${allowed.port}`);
    expect(verifyCallback(h.callbackSecret, hook!.body, signedWith(hook!))).toBe(true);
  });
});

describe('callback queue', () => {
  it('receivers that hang do not hold up signups: an instance becomes ready while every delivery is blocked', async () => {
    h = await startHarness({
      env: {
        TENANTDB_INSTANCE_JOB_CONCURRENCY: '2',
        TENANTDB_CALLBACK_CONCURRENCY: '2',
        TENANTDB_CALLBACK_TIMEOUT_MS: '120000',
      },
    });
    const hanging = await receiver({ answers: Array.from({ length: 10 }, () => 'hang' as const) });
    // As many hanging callbacks as a replica runs jobs at once (either queue's concurrency).
    const slow = [newInstance({ callback_url: hanging.url }), newInstance({ callback_url: hanging.url })];
    const created = await Promise.all(slow.map((body) => h!.api('POST', '/api/v1/instances', { body })));
    for (const [i, c] of created.entries()) await h.waitForStatus(c.body.id, slow[i]!.customer_id, ['ready']);
    await waitUntil(() => hanging.received.length === 2);

    const signup = newInstance();
    const next = await h.api('POST', '/api/v1/instances', { body: signup });
    const ready = await h.waitForStatus(next.body.id, signup.customer_id, ['ready'], 30_000);
    expect(ready.db_name).toMatch(/^tdb_/);
    // Meanwhile every delivery is still blocked on its receiver.
    expect(hanging.received.map((r) => r.answered)).toEqual(['hang', 'hang']);
    for (const c of created)
      expect(await h.deps.repo.findById(c.body.id)).toMatchObject({
        callback_status: 'pending',
        callback_attempts: 1,
      });
    const active = await h.deps.queues.queue('callbacks').getJobs(['active']);
    expect(active.map((j) => j.name).sort()).toEqual(['deliver-callback', 'deliver-callback']);
  });
});

describe('tenant events (quota ladder, suspension)', () => {
  it('are delivered signed to the instance callback_url, once per delivery id', async () => {
    h = await startHarness();
    const portal = await receiver();
    const body = newInstance({ callback_url: portal.url });
    const created = await h.api('POST', '/api/v1/instances', { body });
    expect(created.status).toBe(202);
    await h.waitForStatus(created.body.id, body.customer_id, ['ready']);
    await waitUntil(() => portal.received.length === 1); // instance.ready
    const notice = (event: 'database.quota_warned' | 'database.quota_restricted', delivery_id: string) =>
      h!.deps.queues.enqueue('deliver-tenant-event', {
        instance_id: created.body.id,
        event,
        occurred_at: new Date().toISOString(),
        delivery_id,
      });
    await notice('database.quota_warned', 'd1-warned');
    await notice('database.quota_warned', 'd1-warned'); // a repeat of the same transition
    await notice('database.quota_restricted', 'd1-restricted');
    await waitUntil(() => portal.received.length === 3);
    await sleep(500);
    const events = portal.received.slice(1);
    expect(events).toHaveLength(2);
    // Delivered concurrently: in either order.
    expect(events.map((e) => `${e.delivery} ${e.headers['x-tenantdb-event']}`).sort()).toEqual([
      'd1-restricted database.quota_restricted',
      'd1-warned database.quota_warned',
    ]);
    for (const e of events) {
      expect(e.signatureValid).toBe(true);
      expect(JSON.parse(e.body)).toMatchObject({
        instance: { id: created.body.id, customer_id: body.customer_id },
      });
    }
  });
});

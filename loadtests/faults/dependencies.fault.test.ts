// Faults of what the platform talks to, each under load on one stack: a pool server behind a TCP
// proxy that adds latency, and a callback receiver that fails (500, a reset connection, a hang).
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import {
  canLogin,
  type RunningPostgres,
  startCallbackReceiver,
  startPostgres,
  startTcpProxy,
  type TcpProxy,
} from '@tenantdb/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FaultStack, startFaultStack, waitUntil } from './stack';

let s: FaultStack;
let slowServer: RunningPostgres | undefined;
let proxy: TcpProxy | undefined;
beforeAll(async () => {
  s = await startFaultStack({ TENANTDB_CALLBACK_TIMEOUT_MS: '2000' });
  await s.waitForCapacity(5);
});
afterAll(async () => {
  await s?.close();
  await proxy?.close();
  await slowServer?.destroy();
});

describe('faults of what the platform talks to, under load', () => {
  it('a pool server slowed by a proxy adding 40 ms each way: allocations on it are slow, never wrong', async () => {
    const password = randomBytes(24).toString('base64url');
    slowServer = await startPostgres({ password, settings: { fsync: 'off' } });
    proxy = await startTcpProxy({ host: '127.0.0.1', port: slowServer.port }, { latencyMs: 40 });
    // The slow pool comes first (priority 1), so the load lands on it until it is full.
    const registered = await s.admin('POST', '/api/database/admin/pools/register', {
      name: `pool-slow-${randomBytes(3).toString('hex')}`,
      host: '127.0.0.1',
      port: proxy.port,
      admin_user: slowServer.user,
      admin_password: password,
      max_instances: 10,
      priority: 1,
    });
    expect(registered.status).toBe(201);
    const slowId = registered.body.pool.id as string;
    const report = await s.underLoad(
      {
        name: 'pool server slowed',
        injected:
          'a Postgres registered as a pool (priority 1) behind a Node TCP proxy delaying every chunk 40 ms each way',
      },
      async (load) => {
        await load.progress(6, 120_000);
      },
    );
    expect(report.violations).toEqual([]);
    expect(proxy.chunks).toBeGreaterThan(0);
    const onSlow = [...s.acknowledged.values()].filter((a) => a.credentials.db_server_id === slowId);
    expect(onSlow.length).toBeGreaterThan(0);
    expect(onSlow.every((a) => a.credentials.db_port === proxy!.port)).toBe(true);
  });

  it('a callback receiver that fails (500, reset, hang): every instance is ready and its callback delivered', async () => {
    // Per instance: 500, then a reset connection, then no answer at all, then 200.
    const receiver = await startCallbackReceiver({
      answers: [{ status: 500 }, 'reset', 'hang'],
      secret: s.stack.secrets.callbackSecret,
    });
    const instances: { id: string; customer_id: string }[] = [];
    try {
      const report = await s.underLoad(
        {
          name: 'callback receiver failing',
          injected:
            'signups with a callback_url whose receiver answers 500, then resets the connection, then hangs past the timeout, then 200',
        },
        async () => {
          for (let i = 0; i < 3; i++) {
            const body = {
              customer_id: randomUUID(),
              name: `callback ${i}`,
              plan_tier: 'standard',
              callback_url: receiver.url,
            };
            const created = await portal('POST', '/api/v1/instances', body);
            expect(created.status).toBe(202);
            instances.push({ id: created.body.id, customer_id: body.customer_id });
          }
          await waitUntil(
            async () => {
              for (const i of instances) {
                const got = await portal('GET', `/api/v1/instances/${i.id}?customer_id=${i.customer_id}`);
                if (got.body.callback_status !== 'delivered') return false;
              }
              return true;
            },
            120_000,
            'every callback to be delivered',
          );
        },
      );
      expect(report.violations).toEqual([]);
      for (const i of instances) {
        const got = await portal('GET', `/api/v1/instances/${i.id}?customer_id=${i.customer_id}`);
        expect(got.body.status).toBe('ready');
        const hooks = receiver.for(i.id);
        // Three attempts failed on the receiver's side, the fourth was answered 200, and that ended it.
        expect(hooks.map((h) => h.answered)).toEqual([500, 'reset', 'hang', 200]);
        for (const h of hooks) {
          expect(h.body).toBe(hooks[0]!.body); // the same bytes every time, signed with the attempt's time
          const signed = `${h.headers['x-tenantdb-timestamp']}.${h.body}`;
          const signature = `sha256=${createHmac('sha256', s.stack.secrets.callbackSecret).update(signed).digest('hex')}`;
          expect(h.headers['x-tenantdb-signature']).toBe(signature);
          expect(h.body).not.toMatch(/password/);
        }
        const creds = await portal(
          'POST',
          `/api/v1/instances/${i.id}/credentials?customer_id=${i.customer_id}`,
        );
        s.knownSecrets.add(creds.body.db_password);
        expect(await canLogin(creds.body)).toBe(true);
      }
      for (const secret of s.knownSecrets)
        expect(receiver.received.some((r) => r.body.includes(secret))).toBe(false);
    } finally {
      await receiver.close();
    }
  });
});

async function portal(method: 'GET' | 'POST', path: string, body?: unknown) {
  const res = await fetch(`${s.stack.urls.instanceService}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${s.stack.secrets.portalToken}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  // biome-ignore lint/suspicious/noExplicitAny: a parsed JSON body, read field by field
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as any };
}

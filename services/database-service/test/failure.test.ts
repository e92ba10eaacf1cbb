// A pool server that fails after the slot was reserved: the slot is given back, the row is
// marked failed, and the request moves on to another pool when there is one. Redis away when an
// allocation finds no room: 503, nothing changed.
import { recentUnmetDemand } from '@tenantdb/jobs';
import { startRedis } from '@tenantdb/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { canLogin, type Harness, newIds, startHarness } from './harness';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const rowsByStatus = async (harness: Harness) =>
  Object.fromEntries(
    (
      await harness.db
        .selectFrom('tenant_databases')
        .select((eb) => ['status', eb.fn.countAll<number>().as('n')])
        .groupBy('status')
        .execute()
    ).map((r) => [r.status, Number(r.n)]),
  );

describe('pool server failure after reservation', () => {
  it('leaves no slot used and no row in creating when the only pool is down', async () => {
    h = await startHarness({ pools: [10] });
    const [server] = h.servers;
    await server!.stop(); // the catalog still believes it active and healthy

    const res = await h.api('POST', '/api/database/allocate', newIds());
    expect(res.status).toBe(202);
    const row = await h.db
      .selectFrom('db_servers')
      .selectAll()
      .where('id', '=', server!.id)
      .executeTakeFirstOrThrow();
    expect(row.current_instances).toBe(0);
    expect(await rowsByStatus(h)).toEqual({ failed: 1 });
    const failed = await h.db
      .selectFrom('tenant_databases')
      .select('status_reason')
      .executeTakeFirstOrThrow();
    expect(failed.status_reason).toMatch(/ECONNREFUSED|unavailable/);

    // Back up: the same instance can be allocated afresh, and it works.
    await server!.start();
    const ids = newIds();
    const again = await h.api('POST', '/api/database/allocate', ids);
    expect(again.status).toBe(200);
    expect(await canLogin(again.body)).toBe(true);
  });

  it('moves on to another pool when the chosen one is down', async () => {
    h = await startHarness({ pools: [10, 10] });
    // pack fills the first pool in priority/name order; stop whichever a probe lands on
    const probe = await h.api('POST', '/api/database/allocate', newIds());
    const down = h.servers.find((s) => s.id === probe.body.db_server_id)!;
    const up = h.servers.find((s) => s.id !== down.id)!;
    await down.stop();

    const res = await h.api('POST', '/api/database/allocate', newIds());
    expect(res.status).toBe(200);
    expect(res.body.db_server_id).toBe(up.id);
    expect(await canLogin(res.body)).toBe(true);
    const counts = await h.db.selectFrom('db_servers').select(['id', 'current_instances']).execute();
    expect(Object.fromEntries(counts.map((c) => [c.id, c.current_instances]))).toEqual({
      [down.id]: 1,
      [up.id]: 1,
    });
    expect((await rowsByStatus(h)).creating).toBeUndefined();
  });

  it('a release against a stopped server answers 503 and completes on retry', async () => {
    h = await startHarness({ pools: [10] });
    const ids = newIds();
    const a = (await h.api('POST', '/api/database/allocate', ids)).body;
    await h.servers[0]!.stop();
    const refused = await h.api('DELETE', `/api/database/allocations/${ids.instance_id}`);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBeDefined();
    await h.servers[0]!.start();
    const done = await h.api('DELETE', `/api/database/allocations/${ids.instance_id}`);
    expect(done.status).toBe(200);
    expect(await canLogin(a)).toBe(false);
    const row = await h.db.selectFrom('db_servers').select('current_instances').executeTakeFirstOrThrow();
    expect(row.current_instances).toBe(0);
  });
});

describe('Redis away when no shared pool has room', () => {
  it('answers 503 and changes nothing; with Redis back the turned-away instance is recorded for the planner', async () => {
    const redis = await startRedis();
    try {
      h = await startHarness({ env: { REDIS_URL: redis.url } }); // no pool: every allocation misses
      const ids = newIds();
      await redis.stop();
      const away = await h.api('POST', '/api/database/allocate', ids);
      expect(away.status).toBe(503);
      expect(await rowsByStatus(h)).toEqual({});

      await redis.start();
      let back = await h.api('POST', '/api/database/allocate', ids);
      for (let i = 0; i < 50 && back.status === 503; i++) {
        await new Promise((r) => setTimeout(r, 100)); // the client reconnects
        back = await h.api('POST', '/api/database/allocate', ids);
      }
      expect(back.status).toBe(202);
      expect(await recentUnmetDemand(h.queues)).toEqual([ids.instance_id]);
      expect(await h.queues.queue('provisioning').getJob('grow-shared-capacity')).toBeDefined();
    } finally {
      await h?.close();
      h = undefined;
      await redis.stop();
    }
  });
});

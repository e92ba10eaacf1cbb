// Concurrent allocations never over-commit a server and never answer 202 while a pool has room.
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { canLogin, type Harness, newIds, startHarness } from './harness';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function fleet(harness: Harness) {
  const servers = await harness.db
    .selectFrom('db_servers')
    .select(['id', 'current_instances', 'max_instances', 'status'])
    .execute();
  const live = await harness.db
    .selectFrom('tenant_databases')
    .select((eb) => ['db_server_id', eb.fn.countAll<number>().as('n')])
    .where('status', 'in', ['creating', 'ready', 'releasing'])
    .groupBy('db_server_id')
    .execute();
  const liveBy = new Map(live.map((r) => [r.db_server_id, Number(r.n)]));
  return servers.map((s) => ({ ...s, live: liveBy.get(s.id) ?? 0 }));
}

describe('concurrent allocation', () => {
  it('200 requests against 50 free slots: exactly 50 allocated, the rest 202, counters exact', async () => {
    h = await startHarness({ pools: [20, 30] });
    const harness = h;
    const requests = Array.from({ length: 200 }, () => newIds());
    const answers = await Promise.all(
      requests.map((ids) => harness.api('POST', '/api/database/allocate', ids)),
    );

    const allocated = answers.filter((a) => a.status === 200);
    const provisioning = answers.filter((a) => a.status === 202);
    expect(
      answers.filter((a) => a.status !== 200 && a.status !== 202).map((a) => a.body),
      harness.errorLogs().join('\n'),
    ).toEqual([]);
    expect(allocated).toHaveLength(50);
    expect(provisioning).toHaveLength(150);
    for (const p of provisioning) {
      expect(p.body).toMatchObject({ status: 'provisioning', retry_after: 5 });
      expect(p.headers['retry-after']).toBe('5');
    }
    for (const s of await fleet(harness)) {
      expect(s.current_instances).toBe(s.max_instances);
      expect(s.live).toBe(s.current_instances);
      expect(s.status).toBe('full');
    }
    const unique = new Set(allocated.map((a) => `${a.body.db_server_id}/${a.body.db_name}`));
    expect(unique.size).toBe(50);
    const logins = await Promise.all(allocated.map((a) => canLogin(a.body)));
    expect(logins.every(Boolean)).toBe(true);

    // One capacity job however many misses (single flight by job id).
    const grow = await harness.queues.queue('provisioning').getJobs(['waiting', 'delayed', 'active']);
    expect(grow.filter((j) => j.name === 'grow-shared-capacity')).toHaveLength(1);
  });

  it('as many concurrent requests as free slots: every one is allocated, none told to wait', async () => {
    h = await startHarness({ pools: [10, 15] });
    const harness = h;
    const answers = await Promise.all(
      Array.from({ length: 25 }, () => harness.api('POST', '/api/database/allocate', newIds())),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(25).fill(200));
    for (const s of await fleet(harness)) {
      expect(s.current_instances).toBe(s.max_instances);
      expect(s.live).toBe(s.max_instances);
    }
  });

  it('releases under concurrent allocation keep the counters equal to the live rows', async () => {
    h = await startHarness({ pools: [12] });
    const harness = h;
    const first = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const ids = newIds();
        await harness.api('POST', '/api/database/allocate', ids);
        return ids;
      }),
    );
    const answers = await Promise.all([
      ...first.map((ids) => harness.api('DELETE', `/api/database/allocations/${ids.instance_id}`)),
      ...Array.from({ length: 8 }, () => harness.api('POST', '/api/database/allocate', newIds())),
    ]);
    expect(answers.slice(0, 8).map((a) => a.status)).toEqual(Array(8).fill(200));
    // 4 slots were free from the start; the other new requests raced the releases.
    const allocated = answers.slice(8).filter((a) => a.status === 200).length;
    expect(allocated).toBeGreaterThanOrEqual(4);
    const [server] = await fleet(harness);
    expect(server!.live).toBe(server!.current_instances);
    expect(server!.current_instances).toBe(allocated);
  });

  it('reserves exactly one slot per allocation once the planner has statistics on db_servers', async () => {
    h = await startHarness({ pools: [10, 10, 10] });
    const harness = h;
    // With statistics the planner may re-run a joined subquery per row; the reservation must not.
    await sql`ANALYZE db_servers`.execute(harness.db);
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await harness.api('POST', '/api/database/allocate', newIds()));
    answers.push(
      ...(await Promise.all(
        Array.from({ length: 8 }, () => harness.api('POST', '/api/database/allocate', newIds())),
      )),
    );
    expect(answers.map((a) => a.status).filter((s) => s !== 200)).toEqual([]);
    const servers = await fleet(harness);
    expect(servers.reduce((n, s) => n + s.current_instances, 0)).toBe(12);
    for (const s of servers) expect(s.current_instances).toBe(s.live);
  });
});

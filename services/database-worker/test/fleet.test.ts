// The fleet grows with demand: from nothing, a burst of allocations ends with exactly the pools it
// needs; with headroom, a steady stream never waits; dedicated servers and warm databases work
// end to end. Real Postgres servers (local driver), real Redis, two worker replicas.
import { afterEach, describe, expect, it } from 'vitest';
import type { JobContext } from '../src/context';
import { asAdmin, canLogin, type Fleet, newIds, sleep, startFleet, waitFor } from './harness';

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
});

describe('capacity', () => {
  it('a burst of 60 allocations on an empty fleet ends with every one allocated on exactly 3 pools of 25', {
    timeout: 180_000,
  }, async () => {
    fleet = await startFleet({
      replicas: 2,
      env: { TENANTDB_POOL_MAX_INSTANCES: '25', TENANTDB_SHARED_HEADROOM: '1' },
    });
    const f = fleet;
    const requests = Array.from({ length: 60 }, () => newIds());
    const answers = await Promise.all(requests.map((ids) => f.allocateUntilReady(ids, 120_000)));

    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(answers.some((a) => a.provisioningAnswers > 0)).toBe(true); // it really started empty
    const servers = await f.servers();
    expect(servers.map((s) => s.server_type)).toEqual(['shared', 'shared', 'shared']);
    expect(new Set(servers.map((s) => s.name)).size).toBe(3);
    expect(servers.reduce((n, s) => n + s.current_instances, 0)).toBe(60);
    for (const s of servers) {
      expect(['active', 'full']).toContain(s.status);
      expect(s.current_instances).toBeLessThanOrEqual(s.max_instances);
    }
    // One orchestrator object per catalog row, no more.
    const objects = await f.local.list();
    expect(objects.map((o) => o.serverId).sort()).toEqual(servers.map((s) => s.id).sort());
    const logins = await Promise.all(answers.map((a) => canLogin(a.body)));
    expect(logins.filter((ok) => !ok)).toHaveLength(0);
    const unique = new Set(answers.map((a) => `${a.body.db_server_id}/${a.body.db_name}`));
    expect(unique.size).toBe(60);
  });

  it('instances turned away count toward the plan: 40 waiting get all the pools they need at once, and no more', {
    timeout: 180_000,
  }, async () => {
    fleet = await startFleet({
      replicas: 0,
      env: {
        TENANTDB_POOL_MAX_INSTANCES: '10',
        TENANTDB_SHARED_HEADROOM: '1',
        TENANTDB_MAX_PENDING_POOLS: '5',
      },
    });
    const f = fleet;
    // No worker yet: every allocation is turned away (202), and each turned-away instance is recorded.
    const requests = Array.from({ length: 40 }, () => newIds());
    for (const ids of requests) expect((await f.api('POST', '/api/database/allocate', ids)).status).toBe(202);
    await f.addWorker();
    const answers = await Promise.all(requests.map((ids) => f.allocateUntilReady(ids, 120_000)));
    expect(answers.every((a) => a.status === 200)).toBe(true);

    // One planner run started the five pools 41 slots need (40 waiting + a headroom of 1), in one
    // transaction; with the headroom alone it starts one and the rest wait for it to fill.
    const servers = await f.servers();
    expect(servers).toHaveLength(5);
    expect(new Set(servers.map((s) => s.created_at.getTime())).size).toBe(1);
    expect(servers.reduce((n, s) => n + s.current_instances, 0)).toBe(40);
    const [plan] = await f.db
      .selectFrom('audit_events')
      .select('details')
      .where('action', '=', 'server.create')
      .orderBy('occurred_at')
      .limit(1)
      .execute();
    expect(plan?.details).toMatchObject({ unmet: 40, target: 41 });
    // Served, they no longer count: another planner run adds nothing (10 free ≥ a headroom of 1).
    await f.queues.enqueue('grow-shared-capacity', { reason: 'test' });
    await waitFor(
      async () => !(await f.queues.queue('provisioning').getJob('grow-shared-capacity')),
      30_000,
      'the planner run',
    );
    expect(await f.servers()).toHaveLength(5);
  });

  it('with headroom, a steady stream of allocations never gets a 202 once the first pool is up', {
    timeout: 120_000,
  }, async () => {
    fleet = await startFleet({
      replicas: 2,
      env: {
        TENANTDB_POOL_MAX_INSTANCES: '20',
        TENANTDB_SHARED_HEADROOM: '15',
        TENANTDB_CAPACITY_INTERVAL_MS: '1000',
      },
    });
    const f = fleet;
    await f.waitForServer((servers) => servers.some((s) => s.status === 'active'));
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await f.api('POST', '/api/database/allocate', newIds());
      statuses.push(res.status);
      await sleep(500);
    }
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    const servers = await f.servers();
    // 30 used; the planner kept at least 15 free (or starting) throughout, with 20-slot pools.
    expect(servers.reduce((n, s) => n + s.current_instances, 0)).toBe(30);
    expect(servers.length).toBeGreaterThanOrEqual(3);
  });
});

describe('dedicated servers', () => {
  it('provision-dedicated → 202 → the worker provisions → allocate answers 200 with working credentials there', async () => {
    fleet = await startFleet({ replicas: 2 });
    const f = fleet;
    const ids = newIds('premium');
    const first = await f.api('POST', '/api/database/provision-dedicated', ids);
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ status: 'provisioning', db_server_id: expect.any(String) });
    const serverId = first.body.db_server_id as string;

    await f.waitForServer((servers) => servers.find((s) => s.id === serverId)?.status === 'active');
    const provisioned = await f.api('POST', '/api/database/provision-dedicated', ids);
    expect(provisioned.status).toBe(200);
    expect(provisioned.body).toMatchObject({ status: 'provisioned', db_server_id: serverId });

    const allocated = await f.api('POST', '/api/database/allocate', ids);
    expect(allocated.status).toBe(200);
    expect(allocated.body.db_server_id).toBe(serverId);
    expect(await canLogin(allocated.body)).toBe(true);
    const [server] = (await f.servers()).filter((s) => s.id === serverId);
    expect(server).toMatchObject({ server_type: 'dedicated', dedicated_to_instance_id: ids.instance_id });
    expect(allocated.body.db_port).toBe(server!.port);
    // Once per instance: polling again made no second server.
    expect((await f.servers()).filter((s) => s.server_type === 'dedicated')).toHaveLength(1);
  });
});

describe('warm databases', () => {
  it('keeps N warm databases per pool; allocate claims one, the refill replaces it, two refills at once make it once', async () => {
    fleet = await startFleet({
      replicas: 2,
      env: { TENANTDB_WARM_DATABASES: '3', TENANTDB_SHARED_HEADROOM: '1' },
    });
    const f = fleet;
    await f.queues.enqueue('grow-shared-capacity', { reason: 'test' });
    await f.waitForServer((servers) => servers.some((s) => s.status === 'active'));
    const warmRows = async () =>
      f.db
        .selectFrom('tenant_databases')
        .selectAll()
        .where('status', '=', 'warm')
        .where('ready_at', 'is not', null)
        .execute();
    await waitFor(async () => (await warmRows()).length === 3, 30_000, 'three warm databases');
    const [server] = await f.servers('active');
    const before = await warmRows();
    const onServer = await asAdmin<{ datname: string }>(
      f,
      server!,
      "SELECT datname FROM pg_database WHERE datname LIKE 'tdb\\_%'",
    );
    expect(onServer.map((r) => r.datname).sort()).toEqual(before.map((r) => r.db_name).sort());

    const res = await f.api('POST', '/api/database/allocate', newIds());
    expect(res.status).toBe(200);
    expect(before.map((r) => r.db_name)).toContain(res.body.db_name); // a warm one was claimed
    expect(await canLogin(res.body)).toBe(true);
    const claimed = await f.db
      .selectFrom('tenant_databases')
      .selectAll()
      .where('db_name', '=', res.body.db_name)
      .executeTakeFirstOrThrow();
    expect(claimed.status).toBe('ready');

    await f.queues.enqueue('refill-warm-databases', {});
    await waitFor(async () => (await warmRows()).length === 3, 30_000, 'the refill');
    const pool = (await f.servers('active'))[0]!;
    expect(pool.current_instances).toBe(1); // warm databases hold no slot

    // Two refills at once (the sweep and a per-pool refill, or two replicas) make the shortfall
    // once between them, not once each.
    for (let i = 0; i < 2; i++)
      expect((await f.api('POST', '/api/database/allocate', newIds())).status).toBe(200);
    expect(await warmRows()).toHaveLength(1);
    const worker = f.workers[0]!;
    const refill = worker.handlers['refill-warm-databases'];
    const ctx = (n: number): JobContext => ({
      job: {} as JobContext['job'],
      log: worker.deps.logger.child({ n }),
    });
    await Promise.all([refill({}, ctx(1)), refill({ server_id: pool.id }, ctx(2))]);
    const after = await f.db
      .selectFrom('tenant_databases')
      .select('db_name')
      .where('db_server_id', '=', pool.id)
      .where('status', '=', 'warm')
      .execute();
    expect(after).toHaveLength(3);
  });
});

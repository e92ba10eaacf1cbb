// Health checks through the worker's jobs: a stopped pool server goes degraded, then unhealthy and
// error after three failed checks, is never placed on meanwhile, and recovers when it is back;
// drift between pg_database and the catalog (health checks) and between current_instances and the
// rows holding a slot (reconcile) is a metric with series only for servers that drift; the sweep
// has one schedule however many replicas run and restart; a sweep checks every server once, one
// connection per server, never more than the configured total at once, and so does reconcile's
// pass over the servers, leaving no connection open behind it.
import type { ServerStatus } from '@tenantdb/catalog';
import { ConnectionCount, type TcpProxy } from '@tenantdb/testkit';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import {
  activePool,
  addProxiedServers,
  asAdmin,
  canLogin,
  type Fleet,
  newIds,
  runReconcile,
  sleep,
  startFleet,
  waitFor,
} from './harness';

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
});

async function sweep(f: Fleet, serverId: string) {
  const before = await f.db
    .selectFrom('db_servers')
    .select('last_health_check')
    .where('id', '=', serverId)
    .executeTakeFirstOrThrow();
  await f.queues.enqueue('health-check-all', {});
  await waitFor(
    async () => {
      const row = await f.db
        .selectFrom('db_servers')
        .select('last_health_check')
        .where('id', '=', serverId)
        .executeTakeFirstOrThrow();
      return (row.last_health_check?.getTime() ?? 0) > (before.last_health_check?.getTime() ?? 0);
    },
    30_000,
    'a health check of the server',
  );
  return f.db.selectFrom('db_servers').selectAll().where('id', '=', serverId).executeTakeFirstOrThrow();
}

/** Each replica's tenantdb_catalog_drift series of one server, as { kind: value }. */
async function driftOnEveryReplica(f: Fleet, server: string): Promise<Record<string, number>[]> {
  return Promise.all(
    f.workers.map(async (worker) => {
      const res = await worker.app.inject({ method: 'GET', url: '/metrics' });
      expect(res.statusCode).toBe(200);
      // The gauge is there (so no series below means no drift, not a metric gone missing).
      expect(res.body).toContain('# TYPE tenantdb_catalog_drift gauge');
      const series: Record<string, number> = {};
      for (const [, labels, value] of res.body.matchAll(/^tenantdb_catalog_drift\{(.*)\} (\S+)$/gm)) {
        if (labels!.includes(`server="${server}"`))
          series[/kind="([^"]*)"/.exec(labels!)![1]!] = Number(value);
      }
      return series;
    }),
  );
}

describe('health checks', () => {
  it('degraded, degraded, unhealthy + error while stopped; never placed on; recovers when started', async () => {
    fleet = await startFleet({ replicas: 2 });
    const f = fleet;
    const pool = await activePool(f);
    const tenant = await f.api('POST', '/api/database/allocate', newIds());
    expect(tenant.status).toBe(200);

    await f.local.stop(pool.orchestrator_ref!);
    const seen: [string, string, number][] = [];
    for (let i = 0; i < 3; i++) {
      const row = await sweep(f, pool.id);
      seen.push([row.status, row.health_status, row.health_failures]);
      // Not placed on while it fails: the request lands elsewhere or waits for new capacity.
      const res = await f.api('POST', '/api/database/allocate', newIds());
      expect([200, 202]).toContain(res.status);
      if (res.status === 200) expect(res.body.db_server_id).not.toBe(pool.id);
    }
    expect(seen).toEqual([
      ['active', 'degraded', 1],
      ['active', 'degraded', 2],
      ['error', 'unhealthy', 3],
    ]);
    const failed = (await f.servers()).find((s) => s.id === pool.id)!;
    expect(failed.status_reason).toMatch(/health check failed 3 times/);
    expect(failed.current_instances).toBe(1);

    // Errored servers are checked too, and come back.
    await f.local.start(pool.orchestrator_ref!);
    const recovered = await sweep(f, pool.id);
    expect([recovered.status, recovered.health_status, recovered.health_failures]).toEqual([
      'active',
      'healthy',
      0,
    ]);
    expect(await canLogin(tenant.body)).toBe(true);
  });
});

describe('tenantdb_catalog_drift', () => {
  it('has a series for a server whose databases drift, the same on every replica, and none once it is back in step', async () => {
    fleet = await startFleet({ replicas: 2 });
    const f = fleet;
    const pool = await activePool(f);
    expect(await f.api('POST', '/api/database/allocate', newIds())).toMatchObject({ status: 200 });

    // Checked and in step: no series at all (not a 0).
    expect((await sweep(f, pool.id)).database_drift).toBe(0);
    expect(await driftOnEveryReplica(f, pool.name)).toEqual([{}, {}]);

    await asAdmin(f, pool, 'CREATE DATABASE tdb_stray_one');
    await asAdmin(f, pool, 'CREATE DATABASE tdb_stray_two');
    await sweep(f, pool.id);
    expect(await driftOnEveryReplica(f, pool.name)).toEqual([{ databases: 2 }, { databases: 2 }]);

    // Repaired (here by hand): the next check finds it in step and the series goes.
    await asAdmin(f, pool, 'DROP DATABASE tdb_stray_one');
    await asAdmin(f, pool, 'DROP DATABASE tdb_stray_two');
    await sweep(f, pool.id);
    expect(await driftOnEveryReplica(f, pool.name)).toEqual([{}, {}]);
  });

  it('has a series for a server whose slots drift once reconcile measured it, only for that server, and none once it is repaired', async () => {
    fleet = await startFleet({ replicas: 2 });
    const f = fleet;
    const pool = await activePool(f);
    expect(await f.api('POST', '/api/database/allocate', newIds())).toMatchObject({ status: 200 });
    // A second server, in step (no slot held, no row), that reconcile measures too.
    const quiet = await f.db
      .insertInto('db_servers')
      .values({
        name: 'quiet-1',
        driver: 'external',
        server_type: 'shared',
        max_instances: 10,
        status: 'error',
        status_reason: 'set by the test',
      })
      .returning('name')
      .executeTakeFirstOrThrow();
    const bump = (by: number) =>
      f.db
        .updateTable('db_servers')
        .set({ current_instances: sql`current_instances + ${by}` })
        .where('id', '=', pool.id)
        .execute();

    await runReconcile(f);
    expect(await driftOnEveryReplica(f, pool.name)).toEqual([{}, {}]);

    // A slot taken by hand, with no allocation behind it.
    await bump(1);
    await runReconcile(f);
    expect(await driftOnEveryReplica(f, pool.name)).toEqual([{ slots: 1 }, { slots: 1 }]);
    expect(await driftOnEveryReplica(f, quiet.name)).toEqual([{}, {}]);
    expect(f.logs.lines.filter((l) => l.includes('"msg":"reconcile done"')).at(-1)).toContain(
      '"slot_drift":1',
    );

    await bump(-1);
    await runReconcile(f);
    expect(await driftOnEveryReplica(f, pool.name)).toEqual([{}, {}]);
  });
});

/** Proxies a test put in front of catalog servers. */
const proxies: TcpProxy[] = [];
afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

describe('the health sweep', () => {
  it('checks every server exactly once per sweep, one connection per server, never more than TENANTDB_HEALTH_CONCURRENCY in all', async () => {
    const total = 3;
    // Two replicas, each allowed `total` health jobs at once: only the fleet-wide bound keeps the
    // sum at `total` (without it, up to 6 checks run at once).
    fleet = await startFleet({ replicas: 2, env: { TENANTDB_HEALTH_CONCURRENCY: String(total) } });
    const f = fleet;
    const pool = await activePool(f);

    // 48 catalog servers, each behind its own proxy to the real pool (40 ms each way per chunk,
    // so checks overlap), in every status; provisioning and decommissioned ones are not checked.
    const statuses: ServerStatus[] = [
      'active',
      'full',
      'error',
      'cordoned',
      'draining',
      'maintenance',
      'provisioning',
      'decommissioned',
    ];
    const all = new ConnectionCount();
    const servers = await addProxiedServers(f, pool, {
      prefix: 'sweep',
      count: 48,
      statuses,
      all,
      latencyMs: 40,
    });
    proxies.push(...servers.map((s) => s.proxy));
    const checked = servers.filter((s) => s.status !== 'provisioning' && s.status !== 'decommissioned');

    const sweepAndWait = async () => {
      const since = new Date();
      all.reset();
      for (const s of servers) s.proxy.count.reset();
      await f.queues.enqueue('health-check-all', {});
      await waitFor(
        async () => {
          const rows = await f.db
            .selectFrom('db_servers')
            .select('id')
            .where(
              'id',
              'in',
              checked.map((s) => s.id),
            )
            .where('last_health_check', '>=', since)
            .execute();
          return rows.length === checked.length && all.open === 0;
        },
        60_000,
        'every server to be checked',
      );
      const monitoring = f.queues.queue('monitoring');
      await waitFor(
        async () => (await monitoring.getJobCounts('waiting', 'active', 'delayed')).active === 0,
        10_000,
        'the monitoring queue to settle',
      );
    };

    for (const sweepNo of [1, 2]) {
      await sweepAndWait();
      for (const s of servers) {
        const expected = checked.includes(s) ? 1 : 0;
        expect(s.proxy.count.opened, `sweep ${sweepNo}: connections to a ${s.status} server`).toBe(expected);
        expect(s.proxy.count.maxOpen).toBeLessThanOrEqual(1);
      }
      expect(all.maxOpen, `sweep ${sweepNo}: connections open at once in all`).toBeLessThanOrEqual(total);
      // The budget is used, not just respected: checks run side by side.
      expect(all.maxOpen).toBeGreaterThanOrEqual(2);
    }

    // A Redis that lost the bound (restarted empty) gets it back from the next sweep.
    const monitoring = f.queues.queue('monitoring');
    await monitoring.removeGlobalConcurrency();
    await sweepAndWait();
    expect(await monitoring.getGlobalConcurrency()).toBe(total);
    expect(all.maxOpen).toBeLessThanOrEqual(total);
    const [audit] = await f.db
      .selectFrom('audit_events')
      .select('details')
      .where('action', '=', 'fleet.health_sweep')
      .orderBy('occurred_at', 'desc')
      .limit(1)
      .execute();
    expect(audit?.details).toMatchObject({ servers: checked.length + 1, concurrency: total });
  });
});

describe('the reconcile pass', () => {
  it('compares every live server once, one connection each closed after, TENANTDB_RECONCILE_CONCURRENCY at once', async () => {
    const atOnce = 3;
    fleet = await startFleet({ replicas: 1, env: { TENANTDB_RECONCILE_CONCURRENCY: String(atOnce) } });
    const f = fleet;
    const pool = await activePool(f);
    // No tenant database on the real pool: through rows that hold none, reconcile would take it
    // for an orphan. Provisioning rows are left out (reconcile would queue their provisioning).
    const all = new ConnectionCount();
    const servers = await addProxiedServers(f, pool, {
      prefix: 'reconcile',
      count: 28,
      statuses: ['active', 'full', 'error', 'cordoned', 'draining', 'maintenance', 'decommissioned'],
      all,
      latencyMs: 40,
    });
    proxies.push(...servers.map((s) => s.proxy));
    const live = new Set<ServerStatus>(['active', 'full', 'cordoned', 'draining', 'maintenance']);

    await runReconcile(f); // whatever ran at start is over, its connections closed
    all.reset();
    for (const s of servers) s.proxy.count.reset();
    await runReconcile(f);

    for (const s of servers) {
      expect(s.proxy.count.opened, `connections to a ${s.status} server`).toBe(live.has(s.status) ? 1 : 0);
      expect(s.proxy.count.maxOpen).toBeLessThanOrEqual(1);
    }
    expect(all.maxOpen, 'connections open at once in all').toBeLessThanOrEqual(atOnce);
    expect(all.maxOpen, 'servers compared side by side').toBeGreaterThanOrEqual(2);
    // Nothing left idle on every server it visited (a pooled connection would stay for 30 s).
    await waitFor(async () => all.open === 0, 5_000, 'every connection of the pass to close');
  });
});

describe('schedules', () => {
  it('runs one health sweep per period with two replicas running and restarting', async () => {
    const interval = 1_500;
    fleet = await startFleet({ replicas: 2, env: { TENANTDB_HEALTH_INTERVAL_MS: String(interval) } });
    const f = fleet;
    const started = Date.now();
    await sleep(3_000);
    // Restart one replica and add a third: each upserts the same schedule on start.
    await f.workers[0]!.stop();
    await f.addWorker();
    await f.addWorker();
    await sleep(4_500);
    const elapsed = Date.now() - started;

    const schedulers = await f.queues.queue('monitoring').getJobSchedulers();
    expect(schedulers.map((s) => s.name)).toEqual(['health-check-all']);
    const sweeps = await f.db
      .selectFrom('audit_events')
      .select('occurred_at')
      .where('action', '=', 'fleet.health_sweep')
      .orderBy('occurred_at')
      .execute();
    expect(sweeps.length).toBeGreaterThanOrEqual(3);
    // A second schedule would double the sweeps; one run late under load is jitter, not a second
    // schedule, so only the count is held to the period (not the gaps between runs).
    expect(sweeps.length).toBeLessThanOrEqual(Math.ceil(elapsed / interval) + 1);
  });

  it('installs again the schedules a Redis restarted empty has lost, once each with two replicas', async () => {
    fleet = await startFleet({ replicas: 2, env: { TENANTDB_SCHEDULE_CHECK_MS: '1000' } });
    const f = fleet;
    const names = async () => {
      const all = await Promise.all(
        (['monitoring', 'provisioning', 'maintenance'] as const).map((q) =>
          f.queues.queue(q).getJobSchedulers(),
        ),
      );
      return all
        .flat()
        .map((s) => s.name)
        .sort();
    };
    const installed = await names();
    expect(installed).toEqual([
      'cleanup-failed-servers',
      'grow-shared-capacity',
      'health-check-all',
      'reconcile',
      'refill-warm-databases',
    ]);
    // What an empty Redis looks like to the workers: their schedules are gone.
    for (const [queue, name] of [
      ['monitoring', 'health-check-all'],
      ['provisioning', 'grow-shared-capacity'],
      ['provisioning', 'refill-warm-databases'],
      ['maintenance', 'reconcile'],
      ['maintenance', 'cleanup-failed-servers'],
    ] as const)
      await f.queues.queue(queue).removeJobScheduler(name);
    // (A replica may already be putting some back: its log line says one did.)
    await waitFor(
      async () =>
        f.logs.text().includes('job schedules were missing from Redis; installed again') &&
        (await names()).length === installed.length,
      30_000,
      'the schedules to come back',
    );
    await sleep(2_500); // more checks by both replicas: nothing is installed twice
    expect(await names()).toEqual(installed);
  });
});

// Health checks through the worker's jobs: a stopped pool server goes degraded, then unhealthy and
// error after three failed checks, is never placed on meanwhile, and recovers when it is back;
// drift between pg_database and the catalog is a metric; the sweep has one schedule however many
// replicas run and restart.
import { afterEach, describe, expect, it } from 'vitest';
import { asAdmin, canLogin, type Fleet, newIds, sleep, startFleet, waitFor } from './harness';

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

async function workerMetrics(f: Fleet): Promise<string> {
  const res = await f.workers[0]!.app.inject({ method: 'GET', url: '/metrics' });
  expect(res.statusCode).toBe(200);
  return res.body;
}

describe('health checks', () => {
  it('degraded, degraded, unhealthy + error while stopped; never placed on; recovers when started', async () => {
    fleet = await startFleet({ replicas: 2 });
    const f = fleet;
    await f.queues.enqueue('grow-shared-capacity', { reason: 'test' });
    await f.waitForServer((servers) => servers.some((s) => s.status === 'active'));
    const [pool] = await f.servers('active');
    const tenant = await f.api('POST', '/api/database/allocate', newIds());
    expect(tenant.status).toBe(200);

    await f.local.stop(pool!.orchestrator_ref!);
    const seen: [string, string, number][] = [];
    for (let i = 0; i < 3; i++) {
      const row = await sweep(f, pool!.id);
      seen.push([row.status, row.health_status, row.health_failures]);
      // Not placed on while it fails: the request lands elsewhere or waits for new capacity.
      const res = await f.api('POST', '/api/database/allocate', newIds());
      expect([200, 202]).toContain(res.status);
      if (res.status === 200) expect(res.body.db_server_id).not.toBe(pool!.id);
    }
    expect(seen).toEqual([
      ['active', 'degraded', 1],
      ['active', 'degraded', 2],
      ['error', 'unhealthy', 3],
    ]);
    const failed = (await f.servers()).find((s) => s.id === pool!.id)!;
    expect(failed.status_reason).toMatch(/health check failed 3 times/);
    expect(failed.current_instances).toBe(1);

    // Errored servers are checked too, and come back.
    await f.local.start(pool!.orchestrator_ref!);
    const recovered = await sweep(f, pool!.id);
    expect([recovered.status, recovered.health_status, recovered.health_failures]).toEqual([
      'active',
      'healthy',
      0,
    ]);
    expect(await canLogin(tenant.body)).toBe(true);
  });

  it('reports databases on a server that the catalog does not know as drift, the same on every replica', async () => {
    fleet = await startFleet({ replicas: 2 });
    const f = fleet;
    await f.queues.enqueue('grow-shared-capacity', { reason: 'test' });
    await f.waitForServer((servers) => servers.some((s) => s.status === 'active'));
    const [pool] = await f.servers('active');
    expect(await f.api('POST', '/api/database/allocate', newIds())).toMatchObject({ status: 200 });

    await sweep(f, pool!.id);
    const drift = (kind: string, value: number) =>
      new RegExp(`tenantdb_catalog_drift\\{server="${pool!.name}",kind="${kind}"[^}]*\\} ${value}\\n`);
    expect(await workerMetrics(f)).toMatch(drift('databases', 0));

    await asAdmin(f, pool!, 'CREATE DATABASE tdb_stray_one');
    await asAdmin(f, pool!, 'CREATE DATABASE tdb_stray_two');
    await sweep(f, pool!.id);
    for (const worker of f.workers) {
      const res = await worker.app.inject({ method: 'GET', url: '/metrics' });
      expect(res.body).toMatch(drift('databases', 2));
      expect(res.body).toMatch(drift('slots', 0));
    }
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

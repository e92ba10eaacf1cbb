// The health sweep at fleet scale (issue 8, Show 2): a seeded fleet whose every checkable server
// sits behind a counting TCP proxy of its own in front of a real pool server, two database-worker
// processes, one health-check-all. Measured: how long until every server has been checked (from
// the catalog's own timestamps), connections per server (each proxy's count) and connections open
// at once in all (the proxies share one count). Then reconcile's pass over the same fleet, and a
// usage sampling pass (sampling.ts), counted the same way.
import { ConnectionCount, startTcpProxy, type TcpProxy } from '@tenantdb/testkit';
import pg from 'pg';

const { Client } = pg;

import { waitFor } from '../bench/catalog';
import { closedLoop, fail, type LoadResult, OK, Tally } from '../bench/load';
import type { Stack, WorkerProcess } from '../bench/stack';
import { measureSamplingPass, type SamplingPassResult } from './sampling';
import { type FleetSize, seedFleet } from './seed';

/** Statuses health-check-all checks (services/database-worker/src/jobs/health-check.ts). */
const CHECKED = ['active', 'full', 'error', 'cordoned', 'draining', 'maintenance'];
/** Statuses reconcile compares with the catalog (services/database-worker/src/jobs/reconcile.ts). */
const RECONCILED = ['active', 'full', 'cordoned', 'draining', 'maintenance'];
/** TENANTDB_RECONCILE_CONCURRENCY of every replica (its default). */
const RECONCILE_CONCURRENCY = 8;
/** A health check's queries, as the raw baseline makes them (packages/pool-server/src/health.ts). */
const CHECK_QUERIES = [
  'SELECT 1',
  "SELECT count(*)::int FROM pg_database WHERE starts_with(datname, 'tdb_')",
];
/** What reconcile reads on each server (listTenantObjects, packages/pool-server/src/tenants.ts). */
const RECONCILE_QUERIES = [
  "SELECT datname AS name FROM pg_database WHERE starts_with(datname, 'tdb_')",
  "SELECT rolname AS name FROM pg_roles WHERE starts_with(rolname, 'tdb_')",
];

export interface SweepSettings {
  size: FleetSize;
  replicas: number;
  /** TENANTDB_HEALTH_CONCURRENCY of every replica. */
  concurrency: number;
  timeoutMs: number;
  /** The usage sampling pass after reconcile: its worker's period and data-queue concurrency. */
  sampling: { periodMs: number; dataConcurrency: number };
}

export interface SweepResult {
  servers: number;
  replicas: number;
  concurrency: number;
  /** health-check-all enqueued → the last server's check recorded. */
  durationMs: number;
  /** The same, from the sweep's audit event (fan-out done) to the last check. */
  fanOutMs: number;
  /** Connections each server got during the sweep: [fewest, most]. */
  connectionsPerServer: [number, number];
  /** The most connections open at once to one server. */
  maxOpenPerServer: number;
  /** The most connections open at once to all servers together. */
  maxOpenTotal: number;
  /** Servers whose check failed (health_failures > 0 afterwards). */
  failed: number;
  /** Per-check latency the workers recorded (last_health_latency_ms): a LoadResult for the table. */
  checks: LoadResult;
  /** Replicas started → no job waiting or running and no connection open, for two seconds. */
  settleMs: number;
  /**
   * The raw baseline: the same checks (connect, SELECT 1, the count of tenant databases, close)
   * with plain pg, `concurrency` at once from one process, through the same proxies.
   */
  raw: LoadResult;
  reconcile: ReconcileResult;
  sampling: SamplingPassResult;
}

/** One reconcile over the same fleet, after the sweep. */
export interface ReconcileResult {
  /** Servers in a status reconcile compares. */
  servers: number;
  concurrency: number;
  /** reconcile enqueued → every such server compared and every connection closed (polled each 50 ms). */
  durationMs: number;
  connectionsPerServer: [number, number];
  maxOpenPerServer: number;
  maxOpenTotal: number;
  /** The pass as a LoadResult for the report's table: servers compared per second (no per-server latency). */
  pass: LoadResult;
  /** The same reads (pg_database and pg_roles listed) with plain pg, `concurrency` at once. */
  raw: LoadResult;
}

export async function measureSweep(
  s: Stack,
  catalog: pg.Client,
  passwordEnc: string,
  settings: SweepSettings,
  log: (line: string) => void,
): Promise<SweepResult> {
  await seedFleet(catalog, {
    size: settings.size,
    realServerIds: s.pools.map((p) => p.id),
    passwordEnc,
    secrets: s.secrets,
  });
  const { rows: targets } = await catalog.query<{ id: string; host: string; port: number }>(
    `SELECT id, host, port FROM db_servers WHERE status = ANY($1::text[]) AND host IS NOT NULL ORDER BY id`,
    [CHECKED],
  );
  // Every checkable server, the real pools' own rows included, gets a proxy to the address it had.
  const all = new ConnectionCount();
  const proxies = new Map<string, TcpProxy>();
  const original = new Map<string, { host: string; port: number }>();
  try {
    for (const t of targets) {
      proxies.set(t.id, await startTcpProxy({ host: t.host, port: t.port }, { shared: all }));
      original.set(t.id, { host: t.host, port: t.port });
    }
    await catalog.query(
      `UPDATE db_servers s SET host = '127.0.0.1', port = p.port
         FROM unnest($1::uuid[], $2::int[]) AS p(id, port) WHERE s.id = p.id`,
      [[...proxies.keys()], [...proxies.values()].map((p) => p.port)],
    );
    log(`  ${targets.length} servers to check, each behind its own proxy`);

    // Whatever the replicas run when they start (a scheduled job that comes due, reconcile's pooled
    // connections idling out) is over before the measured sweep: no job waiting or running and no
    // connection open, for two seconds in a row.
    const workers: WorkerProcess[] = [];
    const hour = String(3_600_000);
    const settleStart = performance.now();
    for (let i = 0; i < settings.replicas; i++) {
      workers.push(
        await s.startWorker({
          TENANTDB_HEALTH_CONCURRENCY: String(settings.concurrency),
          TENANTDB_RECONCILE_CONCURRENCY: String(RECONCILE_CONCURRENCY),
          TENANTDB_HEALTH_INTERVAL_MS: hour,
          TENANTDB_CAPACITY_INTERVAL_MS: hour,
          TENANTDB_RECONCILE_INTERVAL_MS: hour,
          TENANTDB_CLEANUP_INTERVAL_MS: hour,
          TENANTDB_USAGE_SAMPLE_PERIOD_MS: hour,
          TENANTDB_WARM_DATABASES: '0',
        }),
      );
    }
    let quietSince: number | undefined;
    await waitFor(
      async () => {
        const quiet = all.open === 0 && (await busyQueues(s)).length === 0;
        quietSince = quiet ? (quietSince ?? Date.now()) : undefined;
        return quietSince !== undefined && Date.now() - quietSince >= 2_000;
      },
      {
        timeoutMs: settings.timeoutMs,
        what: 'the new replicas to settle',
        intervalMs: 100,
        worker: workers[0],
        state: async () => `${all.open} connections open; busy: ${(await busyQueues(s)).join(', ')}`,
      },
    );
    const settleMs = performance.now() - settleStart;
    // Installing the sampling schedule ran it once (settled: it has queued its samples): those,
    // spread over the hour, are taken off the queue so that none falls into the counts below.
    await s.queues.queue('data').drain(true);
    log(`  replicas settled (no job, no connection) ${(settleMs / 1000).toFixed(1)} s after start`);

    all.reset();
    for (const p of proxies.values()) p.count.reset();
    const since = new Date();
    await s.queues.enqueue('health-check-all', {});
    await waitFor(async () => (await checkedSince(catalog, since)) >= targets.length && all.open === 0, {
      timeoutMs: settings.timeoutMs,
      what: `a sweep over ${targets.length} servers`,
      intervalMs: 100,
      worker: workers[0],
      state: async () => `${await checkedSince(catalog, since)} checked, ${all.open} connections open`,
    });
    for (const w of workers)
      if (!w.alive()) throw new Error(`a worker exited during the sweep (${w.logFile})`);

    const { rows } = await catalog.query<{
      last_check: Date;
      swept_at: Date | null;
      failed: number;
      latencies: number[];
    }>(
      `SELECT max(last_health_check) AS last_check,
              (SELECT max(occurred_at) FROM audit_events WHERE action = 'fleet.health_sweep') AS swept_at,
              count(*) FILTER (WHERE health_failures > 0)::int AS failed,
              coalesce(array_agg(last_health_latency_ms) FILTER (WHERE last_health_latency_ms IS NOT NULL), '{}') AS latencies
         FROM db_servers WHERE id = ANY($1::uuid[])`,
      [[...proxies.keys()]],
    );
    const r = rows[0]!;
    const opened = [...proxies.values()].map((p) => p.count.opened);
    const durationMs = r.last_check.getTime() - since.getTime();
    return {
      servers: targets.length,
      replicas: settings.replicas,
      concurrency: settings.concurrency,
      durationMs,
      fanOutMs: r.swept_at ? r.last_check.getTime() - r.swept_at.getTime() : Number.NaN,
      connectionsPerServer: [Math.min(...opened), Math.max(...opened)],
      maxOpenPerServer: Math.max(...[...proxies.values()].map((p) => p.count.maxOpen)),
      maxOpenTotal: all.maxOpen,
      failed: r.failed,
      checks: checksOf(r.latencies, r.failed, durationMs),
      settleMs,
      raw: await rawPass(s, catalog, [...proxies.values()], settings.concurrency, CHECK_QUERIES),
      reconcile: await measureReconcile(s, catalog, proxies, all, settings.timeoutMs, workers[0]!),
      // The period also places each server in it: the sweep's workers (an hour) make way first.
      sampling: await Promise.all(workers.map((w) => w.stop())).then(async () => {
        await s.queues.queue('data').drain(true);
        return measureSamplingPass(s, catalog, proxies, all, {
          ...settings.sampling,
          timeoutMs: settings.timeoutMs,
        });
      }),
    };
  } finally {
    // The rows point at proxies about to close: give them their addresses back.
    if (original.size)
      await catalog.query(
        `UPDATE db_servers s SET host = o.host, port = o.port
           FROM unnest($1::uuid[], $2::text[], $3::int[]) AS o(id, host, port) WHERE s.id = o.id`,
        [
          [...original.keys()],
          [...original.values()].map((o) => o.host),
          [...original.values()].map((o) => o.port),
        ],
      );
    await Promise.all([...proxies.values()].map((p) => p.close()));
  }
}

/**
 * One reconcile of the fleet behind the proxies: its pass over the servers, each one's connections
 * and those open at once. The sweep before it has finished and closed its connections.
 */
async function measureReconcile(
  s: Stack,
  catalog: pg.Client,
  proxies: Map<string, TcpProxy>,
  all: ConnectionCount,
  timeoutMs: number,
  worker: WorkerProcess,
): Promise<ReconcileResult> {
  const { rows } = await catalog.query<{ id: string }>(
    'SELECT id FROM db_servers WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])',
    [[...proxies.keys()], RECONCILED],
  );
  const compared = rows.map((r) => proxies.get(r.id)!);
  // The raw sweep's last connections may still be closing on the proxies' side.
  await waitFor(async () => all.open === 0, {
    timeoutMs: 10_000,
    what: 'the connections before reconcile to close',
    intervalMs: 50,
    worker,
    state: async () => `${all.open} connections open`,
  });
  all.reset();
  for (const p of proxies.values()) p.count.reset();
  const started = performance.now();
  await s.queues.enqueue('reconcile', {});
  const maintenance = s.queues.queue('maintenance');
  const done = async () => {
    if (!compared.every((p) => p.count.opened > 0) || all.open > 0) return false;
    const counts = await maintenance.getJobCounts('waiting', 'active');
    return (counts.waiting ?? 0) + (counts.active ?? 0) === 0;
  };
  await waitFor(done, {
    timeoutMs,
    what: `a reconcile over ${compared.length} servers`,
    intervalMs: 50,
    worker,
    state: async () =>
      `${compared.filter((p) => p.count.opened > 0).length} compared, ${all.open} connections open`,
  });
  const durationMs = performance.now() - started;
  const opened = compared.map((p) => p.count.opened);
  return {
    servers: compared.length,
    concurrency: RECONCILE_CONCURRENCY,
    durationMs,
    connectionsPerServer: [Math.min(...opened), Math.max(...opened)],
    maxOpenPerServer: Math.max(...[...proxies.values()].map((p) => p.count.maxOpen)),
    maxOpenTotal: all.maxOpen,
    pass: passOf(compared.length, durationMs),
    raw: await rawPass(s, catalog, compared, RECONCILE_CONCURRENCY, RECONCILE_QUERIES),
  };
}

/** What a pass asks of every server, made by hand: a fresh connection each, `concurrency` at once. */
async function rawPass(
  s: Stack,
  catalog: pg.Client,
  proxies: TcpProxy[],
  concurrency: number,
  queries: string[],
): Promise<LoadResult> {
  // Every server (simulated or not) carries the admin credentials of one of the real pools.
  const { rows } = await catalog.query<{
    admin_user: string;
    admin_password_enc: string;
    admin_database: string;
  }>('SELECT admin_user, admin_password_enc, admin_database FROM db_servers WHERE id = $1', [s.pools[0]!.id]);
  const admin = rows[0]!;
  const password = s.secrets.decrypt(admin.admin_password_enc, s.pools[0]!.id);
  // One request per server; the duration only bounds a pass that would otherwise never end.
  return closedLoop({ concurrency, durationMs: 10 * 60_000, maxRequests: proxies.length }, async (_w, i) => {
    const client = new Client({
      host: '127.0.0.1',
      port: proxies[i]!.port,
      user: admin.admin_user,
      password,
      database: admin.admin_database,
    });
    client.on('error', () => {});
    try {
      await client.connect();
      for (const query of queries) await client.query(query);
      return OK; // a throw is counted as an error by the loop
    } finally {
      await client.end().catch(() => {});
    }
  });
}

async function checkedSince(catalog: pg.Client, since: Date): Promise<number> {
  const { rows } = await catalog.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM db_servers
      WHERE status = ANY($1::text[]) AND host IS NOT NULL AND last_health_check >= $2`,
    [CHECKED, since],
  );
  return rows[0]!.n;
}

/** Queues with jobs waiting or running, and how many. */
async function busyQueues(s: Stack): Promise<string[]> {
  const busy: string[] = [];
  for (const name of ['monitoring', 'maintenance', 'provisioning', 'data'] as const) {
    const counts = await s.queues.queue(name).getJobCounts('waiting', 'active');
    const n = (counts.waiting ?? 0) + (counts.active ?? 0);
    if (n > 0) busy.push(`${name}: ${n}`);
  }
  return busy;
}

/** The checks the workers recorded as a LoadResult, for the report's table: a failed one has no latency. */
function checksOf(latencies: number[], failed: number, durationMs: number): LoadResult {
  const tally = new Tally();
  for (const ms of latencies) tally.record(OK, ms);
  for (let i = 0; i < failed; i++) tally.record(fail('health check failed'));
  return tally.result(durationMs);
}

/** A pass over `servers` as a LoadResult: servers per second, no per-server latency. */
function passOf(servers: number, durationMs: number): LoadResult {
  const tally = new Tally();
  for (let i = 0; i < servers; i++) tally.record(OK);
  return tally.result(durationMs);
}

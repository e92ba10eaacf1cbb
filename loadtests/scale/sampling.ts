// Usage sampling at fleet scale (issue 17, Measure): the catalog's share of one server's sample on
// the small and the large catalog (an operation for run.ts's alternating blocks), and a whole
// sampling pass over the sweep's fleet behind its counting proxies (after the sweep and reconcile,
// in sweep.ts): how long from the first server sampled to the last against the period, and how
// many connections each server got and had open at once.
import { type CatalogDb, createCatalogDb, createUsageRepo, SERVING_STATUSES } from '@tenantdb/catalog';
import type { ConnectionCount, TcpProxy } from '@tenantdb/testkit';
import type pg from 'pg';
import { waitFor } from '../bench/catalog';
import { rowFrom } from '../bench/context';
import { fail, type LoadResult, OK, type Operation } from '../bench/load';
import type { ScenarioResult } from '../bench/report';
import type { CatalogService, Stack, WorkerProcess } from '../bench/stack';

/** Thrown to roll a measured transaction back. */
class RolledBack extends Error {}

/** Ready tenants per server → how many servers have that many, on one catalog. */
export async function readyPerServer(catalog: pg.Client): Promise<Map<number, number>> {
  const { rows } = await catalog.query<{ tenants: number; servers: number }>(
    `SELECT tenants, count(*)::int AS servers FROM (
       SELECT count(*)::int AS tenants FROM tenant_databases WHERE status = 'ready' GROUP BY db_server_id) c
      GROUP BY tenants`,
  );
  return new Map(rows.map((r) => [r.tenants, r.servers]));
}

/**
 * The number of ready tenants per server that both catalogs have servers with, the most common
 * on the smaller one: samples of that many tenants compare like for like (a statement's fixed
 * cost is spread over its tenants).
 */
export function commonTenantCount(small: Map<number, number>, large: Map<number, number>): number {
  const shared = [...small].filter(([tenants]) => tenants > 0 && large.has(tenants));
  if (shared.length === 0)
    throw new Error('no server of either catalog has as many ready tenants as one of the other');
  return shared.sort((a, b) => b[1] - a[1] || b[0] - a[0])[0]![0];
}

/**
 * One server's sample as sample-usage-server makes it in the catalog (UsageRepo.listToSample,
 * then recordSamples with a figure for each tenant, which also reads the ladder's view of them),
 * in a transaction that is rolled back; servers taken in turn from those with exactly `tenants`
 * ready tenants. Counts the tenants sampled, so a report can tell the cost per tenant.
 */
export async function sampleCatalogOp(
  target: CatalogService,
  tenantsPerServer: number,
): Promise<{ op: Operation; servers: number; tenants: () => number; close(): Promise<void> }> {
  const db: CatalogDb = createCatalogDb({ url: target.catalogUrl, poolSize: 1 });
  const usage = createUsageRepo(db);
  const servers = (
    await db
      .selectFrom('tenant_databases')
      .select('db_server_id')
      .where('status', '=', 'ready')
      .groupBy('db_server_id')
      .having((eb) => eb.fn.countAll(), '=', tenantsPerServer)
      .execute()
  ).map((r) => r.db_server_id);
  if (servers.length === 0) throw new Error(`no server has ${tenantsPerServer} ready tenants to sample`);
  let tenants = 0;
  return {
    op: async (_worker, seq) => {
      const serverId = servers[seq % servers.length]!;
      try {
        await db.transaction().execute(async (trx) => {
          const rows = await usage.listToSample(serverId, trx);
          const ladder = await usage.recordSamples(
            rows.map((r, i) => ({ id: r.id, sizeBytes: 1_048_576 * (i + 1), connections: i % 3 })),
            trx,
          );
          if (ladder.length !== rows.length) throw new Error(`${ladder.length} of ${rows.length} recorded`);
          tenants += rows.length;
          throw new RolledBack();
        });
      } catch (err) {
        if (err instanceof RolledBack) return OK;
        return fail(err instanceof Error ? err.message : String(err));
      }
      return fail('the transaction was not rolled back');
    },
    servers: servers.length,
    tenants: () => tenants,
    close: () => db.destroy(),
  };
}

export interface SamplingPassResult {
  /** Servers with ready tenants in a status the pass samples: each must be sampled once. */
  servers: number;
  periodMs: number;
  /** The first server's connection → the last server's (polled every 50 ms). */
  passMs: number;
  connectionsPerServer: [number, number];
  maxOpenPerServer: number;
  maxOpenTotal: number;
  dataConcurrency: number;
}

/**
 * One sampling pass over the fleet behind `proxies`, on a database-worker of its own whose
 * TENANTDB_USAGE_SAMPLE_PERIOD_MS is `periodMs` (every other schedule an hour away); the sweep's
 * workers are stopped before, since the period also places each server in it. The pass is the one
 * the new worker's schedule starts; it is over when every server to sample had its connection and
 * none is open.
 */
export async function measureSamplingPass(
  s: Stack,
  catalog: pg.Client,
  proxies: Map<string, TcpProxy>,
  all: ConnectionCount,
  opts: { periodMs: number; dataConcurrency: number; timeoutMs: number },
): Promise<SamplingPassResult> {
  const { rows } = await catalog.query<{ id: string }>(
    `SELECT DISTINCT s.id FROM db_servers s JOIN tenant_databases t ON t.db_server_id = s.id
      WHERE s.id = ANY($1::uuid[]) AND s.status = ANY($2::text[]) AND s.host IS NOT NULL
        AND t.status = 'ready'`,
    [[...proxies.keys()], SERVING_STATUSES],
  );
  const sampled = rows.map((r) => proxies.get(r.id)!);
  await waitFor(async () => all.open === 0, {
    timeoutMs: 10_000,
    what: 'the connections before the sampling pass to close',
    intervalMs: 50,
  });
  all.reset();
  for (const p of proxies.values()) p.count.reset();
  const hour = String(3_600_000);
  let worker: WorkerProcess | undefined;
  try {
    worker = await s.startWorker({
      TENANTDB_USAGE_SAMPLE_PERIOD_MS: String(opts.periodMs),
      TENANTDB_DATA_CONCURRENCY: String(opts.dataConcurrency),
      TENANTDB_HEALTH_INTERVAL_MS: hour,
      TENANTDB_CAPACITY_INTERVAL_MS: hour,
      TENANTDB_RECONCILE_INTERVAL_MS: hour,
      TENANTDB_CLEANUP_INTERVAL_MS: hour,
      TENANTDB_WARM_DATABASES: '0',
    });
    let firstAt: number | undefined;
    let lastAt = 0;
    const seen = () => sampled.filter((p) => p.count.opened > 0).length;
    await waitFor(
      async () => {
        const n = seen();
        if (n > 0) firstAt ??= performance.now();
        if (n < sampled.length) return false;
        lastAt ||= performance.now();
        return all.open === 0;
      },
      {
        timeoutMs: opts.timeoutMs,
        what: `a sampling pass over ${sampled.length} servers`,
        intervalMs: 50,
        worker,
        state: async () => `${seen()} of ${sampled.length} sampled, ${all.open} connections open`,
      },
    );
    const opened = sampled.map((p) => p.count.opened);
    return {
      servers: sampled.length,
      periodMs: opts.periodMs,
      passMs: lastAt - (firstAt ?? lastAt),
      connectionsPerServer: [Math.min(...opened), Math.max(...opened)],
      maxOpenPerServer: Math.max(...[...proxies.values()].map((p) => p.count.maxOpen)),
      maxOpenTotal: all.maxOpen,
      dataConcurrency: opts.dataConcurrency,
    };
  } finally {
    await worker?.stop();
  }
}

/** Issue 17's target: a sample's catalog cost per tenant on the large catalog against the small one's. */
const PER_TENANT_RATIO = 1.2;

export interface SamplingCatalogCost {
  results: Record<'small' | 'large', LoadResult>;
  /** Tenants a sample covered, on average, on each catalog. */
  tenantsPerSample: Record<'small' | 'large', number>;
  /** Servers the samples went round, on each catalog. */
  servers: Record<'small' | 'large', number>;
  sessions: number;
  /** Sentences on how the blocks ran and the load, from run.ts (they are shared by every scenario). */
  notes: string[];
}

/** The report's section: the catalog's cost per tenant side by side, and the pass over the fleet. */
export function samplingResult(cost: SamplingCatalogCost, pass: SamplingPassResult): ScenarioResult {
  const perTenant = (label: 'small' | 'large', q: 'p50' | 'p99') =>
    cost.results[label].latency[q] / cost.tenantsPerSample[label];
  const p50 = perTenant('large', 'p50') / perTenant('small', 'p50');
  const p99 = perTenant('large', 'p99') / perTenant('small', 'p99');
  const clean = cost.results.small.errors === 0 && cost.results.large.errors === 0;
  const bounded =
    pass.maxOpenPerServer <= 1 && pass.connectionsPerServer[0] === 1 && pass.connectionsPerServer[1] === 1;
  const us = (ms: number) => `${(ms * 1000).toFixed(0)} µs`;
  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  return {
    id: 'scale-sampling',
    title: 'Usage sampling: one server’s sample in the catalog, and a pass over the fleet',
    rows: [
      rowFrom('server sample (catalog statements), small', cost.results.small, {
        unit: ' samples/s',
        verdict: 'info',
      }),
      rowFrom('server sample (catalog statements), large', cost.results.large, {
        unit: ' samples/s',
        baseline: `small per tenant: p50 ${us(perTenant('small', 'p50'))}, p99 ${us(perTenant('small', 'p99'))}`,
        comparison: `per tenant p50 ×${p50.toFixed(2)}, p99 ×${p99.toFixed(2)}`,
        target: `per tenant p50 ≤ ${PER_TENANT_RATIO}× small; no errors`,
        verdict: p50 <= PER_TENANT_RATIO && clean ? 'PASS' : 'FAIL',
      }),
      {
        name: `sampling pass, ${pass.servers.toLocaleString('en-US')} servers`,
        requests: pass.servers,
        throughput: pass.passMs > 0 ? (pass.servers * 1000) / pass.passMs : Number.NaN,
        p50Ms: Number.NaN,
        p95Ms: Number.NaN,
        p99Ms: Number.NaN,
        errors: 0,
        unit: ' servers/s',
        baseline: `period ${s(pass.periodMs)}`,
        comparison: `first → last server ${s(pass.passMs)}; ≤ ${pass.maxOpenPerServer} per server, ≤ ${pass.maxOpenTotal} in all`,
        target: 'within the period; 1 connection per server, never 2 at once',
        verdict: pass.passMs <= pass.periodMs && bounded ? 'PASS' : 'FAIL',
      },
    ],
    notes: [
      `Catalog cost: ${cost.sessions} session on each catalog (a server is never sampled twice at once), each request one server’s sample as ` +
        'sample-usage-server makes it in the catalog (UsageRepo.listToSample, then recordSamples with a figure ' +
        'for every tenant, which also reads the quota ladder’s view of them), through the repository’s own ' +
        'kysely code, in a transaction that is rolled back; servers in turn from those with the same number ' +
        `of ready tenants on both catalogs (${cost.servers.small} servers on the small catalog, ` +
        `${cost.servers.large.toLocaleString('en-US')} on the large one): a sample covered ` +
        `${cost.tenantsPerSample.small.toFixed(1)} tenants on the small catalog and ` +
        `${cost.tenantsPerSample.large.toFixed(1)} on the large one; the ratio is of the cost per tenant.`,
      ...cost.notes,
      `The pass: the health sweep’s fleet behind its counting proxies, after reconcile; the sweep’s workers stopped ` +
        `and the data queue emptied, then one database-worker with TENANTDB_USAGE_SAMPLE_PERIOD_MS=${pass.periodMs} ` +
        `and TENANTDB_DATA_CONCURRENCY=${pass.dataConcurrency} (every other schedule an hour away). Its schedule’s ` +
        `first run queues every serving server’s sample at its offset in the first nine tenths of the period; measured from the first ` +
        `server’s connection to the last one’s (proxies polled every 50 ms): ${s(pass.passMs)} for ` +
        `${pass.servers.toLocaleString('en-US')} servers with ready tenants. Connections per server: ` +
        `${pass.connectionsPerServer[0]}–${pass.connectionsPerServer[1]}; open at once: at most ` +
        `${pass.maxOpenPerServer} per server and ${pass.maxOpenTotal} in all. The simulated servers’ tenant ` +
        'databases do not exist on the real server behind them, so each sample’s query finds none and nothing ' +
        'is stored; the catalog’s share is the row above.',
    ],
  };
}

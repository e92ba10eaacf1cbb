// API paths that only read the catalog: an idempotent repeat of allocate and the allocation read.
// Neither touches a pool server, so the RAW-TX rate is the yardstick the target is set against:
// what the service adds (HTTP, auth, validation, serialization, its queries) must leave at least
// TARGET of it. RAW-READ (the read path's own queries through pg) shows the service's overhead
// on its own, since RAW-TX is bound by the lock on the pool row and the commit flush.
import { CATALOG_SCHEMA } from '@tenantdb/catalog';
import type { Allocated, Allocation } from '@tenantdb/contracts';
import { httpError } from '../api';
import { type BenchContext, errorNotes, rowFrom, type Scenario } from '../context';
import { closedLoop, fail, type LoadResult, OK, type Operation } from '../load';
import { connectMany, endAll } from '../pg';
import type { ScenarioResult } from '../report';
import { fmtRate } from '../report';

const TARGET = 0.4;

async function measure(
  ctx: BenchContext,
  spec: { id: string; title: string; row: string; what: string },
  op: Operation,
): Promise<ScenarioResult> {
  const { settings, state } = ctx;
  if (state.allocated.length === 0) throw new Error('no allocations from S1 to work on');
  const result: LoadResult = await closedLoop(
    { concurrency: settings.concurrency, durationMs: settings.durationMs, warmupMs: settings.warmupMs },
    op,
  );
  const raw = state.rawTxPerSec;
  const ratio = raw === undefined ? undefined : result.throughput / raw;
  const read = state.rawReadPerSec;
  const baseline = [
    raw === undefined ? undefined : `RAW-TX ${fmtRate(raw, ' tx/s')}`,
    read === undefined ? undefined : `RAW-READ ${fmtRate(read, ' /s')}`,
  ].filter(Boolean);
  const comparison = [
    ratio === undefined ? undefined : `${(ratio * 100).toFixed(0)} % of RAW-TX`,
    read === undefined ? undefined : `${((result.throughput / read) * 100).toFixed(0)} % of RAW-READ`,
  ].filter(Boolean);
  return {
    id: spec.id,
    title: spec.title,
    rows: [
      rowFrom(spec.row, result, {
        unit: ' req/s',
        ...(baseline.length ? { baseline: baseline.join('; ') } : {}),
        ...(comparison.length ? { comparison: comparison.join('; ') } : {}),
        target: `≥ ${TARGET * 100} % of RAW-TX, no errors`,
        verdict: ratio !== undefined && ratio >= TARGET && result.errors === 0 ? 'PASS' : 'FAIL',
      }),
    ],
    notes: [
      `${settings.concurrency} HTTP clients, ${settings.durationMs / 1000} s after ${settings.warmupMs / 1000} s warm-up; ` +
        `${spec.what} cycling through the ${state.allocated.length} instances S1 allocated.`,
      `Mean ${result.latency.mean.toFixed(2)} ms, p90 ${result.latency.p90.toFixed(2)} ms, max ${result.latency.max.toFixed(1)} ms.`,
      ...errorNotes(result),
    ],
  };
}

export const repeatAllocate: Scenario = {
  id: 'catalog-repeat-allocate',
  needs: ['raw-tx', 's1-allocate', 'raw-read'],
  run: (ctx) =>
    measure(
      ctx,
      {
        id: 'catalog-repeat-allocate',
        title: 'Catalog path (a): idempotent repeat of allocate',
        row: '(a) POST /allocate, repeat',
        what: 'POST /api/database/allocate with the body of an allocation that already exists, checking that the same database and password come back,',
      },
      async (_worker, seq) => {
        const a = ctx.state.allocated[seq % ctx.state.allocated.length]!;
        const res = await ctx.stack.api.post<Allocated>('/api/database/allocate', {
          instance_id: a.instance_id,
          customer_id: a.customer_id,
          plan_tier: 'standard',
        });
        if (res.status !== 200) return fail(httpError(res));
        if (res.body.db_name !== a.db_name || res.body.db_password !== a.db_password)
          return fail('a repeat answered another database or password');
        return OK;
      },
    ),
};

export const readAllocation: Scenario = {
  id: 'catalog-get-allocation',
  needs: ['raw-tx', 's1-allocate', 'raw-read'],
  run: (ctx) =>
    measure(
      ctx,
      {
        id: 'catalog-get-allocation',
        title: 'Catalog path (b): read an allocation',
        row: '(b) GET /allocations/{id}',
        what: 'GET /api/database/allocations/{instance_id}, checking the status is ready,',
      },
      async (_worker, seq) => {
        const a = ctx.state.allocated[seq % ctx.state.allocated.length]!;
        const res = await ctx.stack.api.get<Allocation>(`/api/database/allocations/${a.instance_id}`);
        if (res.status !== 200) return fail(httpError(res));
        if (res.body.status !== 'ready' || res.body.db_name !== a.db_name)
          return fail(`unexpected allocation: ${res.body.status} ${res.body.db_name}`);
        return OK;
      },
    ),
};

// The two statements of GET /allocations/{id} as Kysely sends them (TenantDatabasesRepo
// .findLatestByInstance, then ServersRepo.findById).
export const LATEST = `select * from "tenant_databases" where "instance_id" = $1
  order by status IN ('creating', 'ready', 'releasing') desc, "created_at" desc limit $2`;
export const SERVER = 'select * from "db_servers" where "id" = $1';

export const rawRead: Scenario = {
  id: 'raw-read',
  needs: ['s1-allocate'],
  async run(ctx: BenchContext) {
    const { stack, settings, state } = ctx;
    if (state.allocated.length === 0) throw new Error('no allocations from S1 to read');
    const clients = await connectMany(settings.concurrency, () => ({
      connectionString: stack.catalogUrl,
      options: `-c search_path=${CATALOG_SCHEMA}`,
    }));
    try {
      const result = await closedLoop(
        { concurrency: settings.concurrency, durationMs: settings.durationMs, warmupMs: settings.warmupMs },
        async (worker, seq) => {
          const c = clients[worker]!;
          const a = state.allocated[seq % state.allocated.length]!;
          const row = (await c.query<{ db_server_id: string }>(LATEST, [a.instance_id, 1])).rows[0];
          if (!row) return fail('allocation not found');
          const server = (await c.query(SERVER, [row.db_server_id])).rows[0];
          return server ? OK : fail('server not found');
        },
      );
      state.rawReadPerSec = result.throughput;
      return {
        id: 'raw-read',
        title: 'RAW-READ: the read path’s queries alone (pg, no service)',
        rows: [rowFrom('RAW-READ 2 SELECTs of GET (pg)', result, { unit: ' /s', verdict: 'info' })],
        notes: [
          `${settings.concurrency} pg clients on the service’s catalog, ${settings.durationMs / 1000} s after ` +
            `${settings.warmupMs / 1000} s warm-up: the two statements GET /allocations/{id} runs ` +
            '(latest tenant_databases row of the instance, then its db_servers row), cycling through S1’s instances.',
          'Not a target baseline: it shows how much of the catalog paths’ cost is the service itself rather than ' +
            'Postgres.',
          ...errorNotes(result),
        ],
      };
    } finally {
      await endAll(clients);
    }
  },
};

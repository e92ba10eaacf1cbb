// Admin polling (issue 7): dashboards polling the fleet statistics, the first page of pools and
// single allocations, each endpoint by its own closed-loop clients, while new allocations arrive
// in the background at a fixed rate. The raw baseline runs the queries those endpoints run with
// plain pg on the catalog, from as many clients, over the same background allocations.
import { CATALOG_SCHEMA } from '@tenantdb/catalog';
import type { Allocation, Pool, Stats } from '@tenantdb/contracts';
import type pg from 'pg';
import { ADMIN_POLLING } from '../../workloads';
import { ApiClient, httpError } from '../api';
import type { AllocatedTenant, BenchContext, Scenario } from '../context';
import { errorNotes, rowFrom } from '../context';
import { closedLoop, fail, type LoadResult, OK, type OpenLoopResult, type Operation } from '../load';
import { connectMany, endAll } from '../pg';
import type { ResultRow } from '../report';
import { LATEST, SERVER } from './catalog-paths';
import { allocateAtRate, OPEN_LOOP_CONNECTIONS, QUICK_DURATION_S, scheduleNote } from './steady-allocation';

type Endpoint = keyof typeof ADMIN_POLLING.endpoints;
const ENDPOINTS = Object.keys(ADMIN_POLLING.endpoints) as Endpoint[];

// The statements of each endpoint as Kysely sends them (ServersRepo.stats, ServersRepo.list —
// rows and count side by side in the service, one after the other here — and the allocation read).
const STATS = `select "status", "server_type", count(*) as "servers", sum("max_instances") as "capacity",
  sum("current_instances") as "used" from "db_servers" where "status" <> $1 group by "status", "server_type"`;
const POOLS_PAGE = 'select * from "db_servers" order by "priority", "name" limit $1 offset $2';
const POOLS_COUNT = 'select count(*) as "n" from "db_servers"';

/** One measured phase: every endpoint's clients side by side, and the background allocations. */
async function phase(
  ctx: BenchContext,
  durationMs: number,
  ops: Record<Endpoint, Operation>,
): Promise<{ byEndpoint: Record<Endpoint, LoadResult>; background: OpenLoopResult }> {
  const { stack, state } = ctx;
  const api = new ApiClient(
    stack.serviceUrl,
    stack.serviceEnv.TENANTDB_ALLOCATE_TOKEN!,
    OPEN_LOOP_CONNECTIONS,
  );
  const made: AllocatedTenant[] = [];
  try {
    const [background, ...results] = await Promise.all([
      allocateAtRate(
        api,
        {
          ratePerSec: ADMIN_POLLING.backgroundAllocationsPerSec,
          requests: Math.round((ADMIN_POLLING.backgroundAllocationsPerSec * durationMs) / 1000),
          planTier: ADMIN_POLLING.planTier,
        },
        made,
      ),
      ...ENDPOINTS.map((e) =>
        closedLoop({ concurrency: ADMIN_POLLING.clientsPerEndpoint, durationMs }, ops[e]),
      ),
    ]);
    state.allocated.push(...made);
    return {
      byEndpoint: Object.fromEntries(ENDPOINTS.map((e, i) => [e, results[i]!])) as Record<
        Endpoint,
        LoadResult
      >,
      background,
    };
  } finally {
    await api.close();
  }
}

export const adminPolling: Scenario = {
  id: 'admin-polling',
  needs: ['steady-allocation'],
  async run(ctx: BenchContext) {
    const { stack, settings, state, log } = ctx;
    const tenants = [...state.allocated];
    if (tenants.length === 0) throw new Error('no allocations to read');
    const durationS = settings.quick ? QUICK_DURATION_S : ADMIN_POLLING.durationS;
    const clients = ENDPOINTS.length * ADMIN_POLLING.clientsPerEndpoint;
    const pick = (seq: number) => tenants[seq % tenants.length]!;

    const api = new ApiClient(stack.serviceUrl, stack.serviceEnv.TENANTDB_ALLOCATE_TOKEN!, clients);
    const path = (e: Endpoint, a: AllocatedTenant) =>
      ADMIN_POLLING.endpoints[e].replace(/^GET /, '').replace('{instance_id}', a.instance_id);
    let service: Awaited<ReturnType<typeof phase>>;
    try {
      service = await phase(ctx, durationS * 1000, {
        stats: async () => {
          const res = await api.request<Stats>('GET', path('stats', pick(0)), undefined, stack.adminToken);
          if (res.status !== 200) return fail(httpError(res));
          return res.body.total_pools > 0 ? OK : fail('stats count no pools');
        },
        pools: async () => {
          const res = await api.request<{ pools: Pool[] }>(
            'GET',
            path('pools', pick(0)),
            undefined,
            stack.adminToken,
          );
          if (res.status !== 200) return fail(httpError(res));
          return res.body.pools.length > 0 ? OK : fail('no pools listed');
        },
        allocation: async (_w, seq) => {
          const a = pick(seq);
          const res = await api.get<Allocation>(path('allocation', a));
          if (res.status !== 200) return fail(httpError(res));
          return res.body.db_name === a.db_name ? OK : fail('another allocation answered');
        },
      });
    } finally {
      await api.close();
    }

    log('  raw baseline: the same queries through pg');
    const perEndpoint = ADMIN_POLLING.clientsPerEndpoint;
    const pgClients = await connectMany(clients, () => ({
      connectionString: stack.catalogUrl,
      options: `-c search_path=${CATALOG_SCHEMA}`,
    }));
    const client = (e: Endpoint, worker: number): pg.Client =>
      pgClients[ENDPOINTS.indexOf(e) * perEndpoint + worker]!;
    let raw: Awaited<ReturnType<typeof phase>>;
    try {
      raw = await phase(ctx, durationS * 1000, {
        stats: async (w) => {
          const { rows } = await client('stats', w).query(STATS, ['decommissioned']);
          return rows.length > 0 ? OK : fail('no servers');
        },
        pools: async (w) => {
          const c = client('pools', w);
          const { rows } = await c.query(POOLS_PAGE, [100, 0]);
          await c.query(POOLS_COUNT);
          return rows.length > 0 ? OK : fail('no servers');
        },
        allocation: async (w, seq) => {
          const c = client('allocation', w);
          const row = (await c.query<{ db_server_id: string }>(LATEST, [pick(seq).instance_id, 1])).rows[0];
          if (!row) return fail('allocation not found');
          return (await c.query(SERVER, [row.db_server_id])).rows[0] ? OK : fail('server not found');
        },
      });
    } finally {
      await endAll(pgClients);
    }

    const rawNames: Record<Endpoint, string> = {
      stats: 'RAW stats GROUP BY (pg)',
      pools: 'RAW pools page + count (pg)',
      allocation: 'RAW 2 SELECTs of GET allocation (pg)',
    };
    const rows: ResultRow[] = [];
    for (const e of ENDPOINTS) {
      const r = raw.byEndpoint[e];
      const s = service.byEndpoint[e];
      rows.push(rowFrom(rawNames[e], r, { unit: ' /s', verdict: 'info' }));
      rows.push(
        rowFrom(`Admin polling ${ADMIN_POLLING.endpoints[e]}`, s, {
          unit: ' req/s',
          baseline: rawNames[e].replace(' (pg)', ''),
          comparison: `${((s.throughput / r.throughput) * 100).toFixed(0)} % of RAW`,
          verdict: 'info',
        }),
      );
    }
    rows.push(
      rowFrom(
        `Admin polling: background allocations at ${ADMIN_POLLING.backgroundAllocationsPerSec}/s`,
        service.background,
        {
          unit: ' alloc/s',
          accepted: service.background.accepted,
          verdict: 'info',
        },
      ),
    );
    return {
      id: 'admin-polling',
      title: 'Admin polling: stats, pools and allocations read while allocations go on',
      rows,
      notes: [
        `${ADMIN_POLLING.clientsPerEndpoint} closed-loop HTTP clients per endpoint (${clients} in all), ${durationS} s, ` +
          'all endpoints side by side: GET /api/database/admin/stats and the first page of ' +
          'GET /api/database/admin/pools (limit 100) with the admin token, GET /api/database/allocations/{id} ' +
          `with the allocate token cycling through the ${tenants.length} allocations made so far. Meanwhile ` +
          `${ADMIN_POLLING.backgroundAllocationsPerSec} new allocations/s arrive (open loop). No target.`,
        `RAW, right after: as many pg clients on the catalog, for as long, running each endpoint’s statements ` +
          '(stats: the GROUP BY over db_servers; pools: the page and the count, one after the other where the ' +
          'service runs them side by side on two connections; allocation: the latest tenant_databases row, then ' +
          'its db_servers row), with the same background allocations through the API.',
        scheduleNote('Background allocations during the API phase', service.background),
        scheduleNote('Background allocations during the RAW phase', raw.background),
        ...ENDPOINTS.flatMap((e) => errorNotes(service.byEndpoint[e]).map((n) => `${e}: ${n}`)),
        ...ENDPOINTS.flatMap((e) => errorNotes(raw.byEndpoint[e]).map((n) => `RAW ${e}: ${n}`)),
        ...errorNotes(service.background).map((n) => `background: ${n}`),
      ],
    };
  },
};

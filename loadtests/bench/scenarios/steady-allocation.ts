// Steady allocation (issue 7): new allocations through database-service at a fixed rate for a
// fixed time (open loop: requests start on schedule however long earlier ones take), then the
// same work without our code — the same number of CREATE ROLE + CREATE DATABASE, on the servers
// the API placed each one on, at the same rate, through plain pg.
import { randomUUID } from 'node:crypto';
import type { Allocated } from '@tenantdb/contracts';
import { STEADY_ALLOCATION } from '../../workloads';
import { ApiClient, httpError } from '../api';
import { type AllocatedTenant, type BenchContext, errorNotes, rowFrom, type Scenario } from '../context';
import { ACCEPTED, fail, OK, type OpenLoopResult, openLoop } from '../load';
import { fmtMs, fmtRate } from '../report';
import type { PoolServer } from '../stack';
import { rawCreateAtRate, SERVICE_CONNECTIONS_PER_SERVER } from './allocate';
import { signedMs } from './provision';

/** Keep-alive connections of the generator's HTTP client; more requests than this queue in it. */
export const OPEN_LOOP_CONNECTIONS = 64;
/** --quick: the same rates for this long. */
export const QUICK_DURATION_S = 6;

/** Open-loop allocations of new instances; each 200 is added to `allocated` with its server. */
export async function allocateAtRate(
  api: ApiClient,
  plan: { ratePerSec: number; requests: number; planTier: string },
  allocated: AllocatedTenant[],
): Promise<OpenLoopResult> {
  return openLoop(
    { ratePerSec: plan.ratePerSec, requests: plan.requests, maxInFlight: OPEN_LOOP_CONNECTIONS * 4 },
    async () => {
      const ids = { instance_id: randomUUID(), customer_id: randomUUID(), plan_tier: plan.planTier };
      const res = await api.post<Allocated>('/api/database/allocate', ids);
      if (res.status === 202) return ACCEPTED;
      if (res.status !== 200) return fail(httpError(res));
      const { status: _status, ...credentials } = res.body;
      allocated.push({ ...ids, ...credentials });
      return OK;
    },
  );
}

/** How far an open loop fell short of its schedule, for the notes. */
export function scheduleNote(label: string, r: OpenLoopResult): string {
  return (
    `${label}: offered ${fmtRate(r.offeredPerSec)} (generator at most ${fmtMs(r.maxSendLagMs)} late), ` +
    `completed ${fmtRate(r.throughput)} over ${(r.elapsedMs / 1000).toFixed(1)} s until the last answer; ` +
    `mean ${fmtMs(r.latency.mean)}, max ${fmtMs(r.latency.max)}.`
  );
}

export const steadyAllocation: Scenario = {
  id: 'steady-allocation',
  async run(ctx: BenchContext) {
    const { stack, settings, state, log } = ctx;
    const { ratePerSec, planTier, endpoint } = STEADY_ALLOCATION;
    const durationS = settings.quick ? QUICK_DURATION_S : STEADY_ALLOCATION.durationS;
    const requests = Math.round(ratePerSec * durationS);
    const api = new ApiClient(
      stack.serviceUrl,
      stack.serviceEnv.TENANTDB_ALLOCATE_TOKEN!,
      OPEN_LOOP_CONNECTIONS,
    );
    const allocated: AllocatedTenant[] = [];
    let result: OpenLoopResult;
    try {
      result = await allocateAtRate(api, { ratePerSec, requests, planTier }, allocated);
    } finally {
      await api.close();
    }
    state.allocated.push(...allocated);

    // The raw run replays the API's placements; a request that got no database goes round-robin.
    const byId = new Map<string, PoolServer>(stack.pools.map((p) => [p.id, p]));
    const servers = Array.from(
      { length: requests },
      (_, i) => byId.get(allocated[i]?.db_server_id ?? '') ?? stack.pools[i % stack.pools.length]!,
    );
    log(`  raw baseline: ${requests} role + database at ${ratePerSec}/s`);
    const raw = await rawCreateAtRate(servers, ratePerSec);

    const placed = stack.pools
      .map((p) => `${p.name} ${servers.filter((s) => s.id === p.id).length}`)
      .join(', ');
    return {
      id: 'steady-allocation',
      title: `Steady allocation: ${ratePerSec} new allocations/s for ${durationS} s (open loop)`,
      rows: [
        rowFrom(`RAW-CREATE at ${ratePerSec}/s (pg)`, raw, { unit: ' db/s', verdict: 'info' }),
        rowFrom(`Steady ${endpoint} at ${ratePerSec}/s`, result, {
          unit: ' alloc/s',
          accepted: result.accepted,
          baseline: `RAW-CREATE at ${ratePerSec}/s: p50 ${fmtMs(raw.latency.p50)}, p99 ${fmtMs(raw.latency.p99)}`,
          comparison: `Δp50 ${signedMs(result.latency.p50 - raw.latency.p50)}; Δp99 ${signedMs(result.latency.p99 - raw.latency.p99)}`,
          verdict: 'info',
        }),
      ],
      notes: [
        `${requests} requests started on a fixed schedule (${ratePerSec}/s for ${durationS} s, whatever the ` +
          'answers take), a fresh instance_id per request, plan "standard"; latency runs from the scheduled ' +
          'start to the answer, so a backlog shows in it. No target: the issue asks for the figures.',
        'The rate is `STEADY_ALLOCATION.ratePerSec` in `loadtests/workloads.ts`: one that a 2-core machine with ' +
          'fsync on sustains when placement (strategy pack) sends nearly every request to the same pool server.',
        `RAW-CREATE at ${ratePerSec}/s, right after: the same number of CREATE ROLE … LOGIN PASSWORD + CREATE ` +
          'DATABASE … OWNER, request i on the pool server the API placed request i on, started on the same ' +
          `schedule, through ${SERVICE_CONNECTIONS_PER_SERVER} admin connections per server (as database-service ` +
          'keeps). It is the same databases without the catalog, HTTP, SCRAM hashing, REVOKE/GRANT and ' +
          `connection limit; dropped afterwards. Placement: ${placed}.`,
        scheduleNote('API', result),
        scheduleNote('RAW', raw),
        ...errorNotes(result),
        ...errorNotes(raw).map((n) => `RAW ${n}`),
      ],
    };
  },
};

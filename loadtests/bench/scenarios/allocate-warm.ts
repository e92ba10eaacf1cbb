// S1-warm: sustained allocation through the API while the warm-fleet pools hold warm databases
// and the worker keeps refilling them. RAW-CLAIM ×16 (the claim statements straight on the same
// pools from as many clients) is measured first: with RAW-TX it bounds what the API could reach.
// Afterwards: which allocations claimed a warm database (the service's audit trail), the slot
// accounting of every server (no over-commit), and where the machine's CPU went.
import { randomUUID } from 'node:crypto';
import type { Allocated } from '@tenantdb/contracts';
import { generatePassword } from '@tenantdb/secrets';
import { type ActivityRow, type ActivitySampler, describeWait, sampleActivity } from '../activity';
import { httpError } from '../api';
import { connectCatalog, slotAccounting } from '../catalog';
import { type BenchContext, errorNotes, rowFrom, type Scenario } from '../context';
import { type CpuSnapshot, cpuBreakdown, cpuSnapshot, pidsOf } from '../cpu';
import { ACCEPTED, closedLoop, fail, type LoadResult, OK, summarize } from '../load';
import { connectMany, endAll } from '../pg';
import { fmtMs, fmtRate, type ResultRow } from '../report';
import { makeRawWarm, rawClaimBatch, requireFleet, standardConnectionLimit } from './time-to-login-warm';

const TARGET_PER_SEC = 300;
/** How often the bench enqueues a refill per pool while S1-warm runs (a no-op while one runs). */
const REFILL_EVERY_MS = 250;
const ACTIVITY_EVERY_MS = 50;

/** Which of the two writers a pool session belongs to, by its statement. */
function poolStatementKind(query: string): string {
  if (/ALLOW_CONNECTIONS|^\s*(CREATE|REVOKE|GRANT)/i.test(query)) return 'refill (worker)';
  if (/^\s*ALTER (ROLE|DATABASE)/i.test(query)) return 'claim (service)';
  return 'other';
}

export const rawClaim: Scenario = {
  id: 'raw-claim',
  needs: ['warm-fleet'],
  async run(ctx: BenchContext) {
    const { stack, settings } = ctx;
    const fleet = await requireFleet(ctx);
    const catalog = await connectCatalog(stack);
    const limit = await standardConnectionLimit(catalog).finally(() => catalog.end());
    const pools = fleet.pools;
    const clients = await connectMany(settings.concurrency, (w) => pools[w % pools.length]!.url());
    try {
      // One warm role + database per client, made like the worker makes them (outside the clock).
      const warm = await Promise.all(clients.map((c) => makeRawWarm(c)));
      const result = await closedLoop(
        { concurrency: settings.concurrency, durationMs: settings.durationMs, warmupMs: settings.warmupMs },
        async (worker) => {
          const c = clients[worker]!;
          await c.query(rawClaimBatch(warm[worker]!, generatePassword(), limit));
          return OK;
        },
      );
      ctx.state.rawClaimPerSec = result.throughput;
      return {
        id: 'raw-claim',
        title: 'RAW-CLAIM ×N: claiming warm databases straight on the warm-fleet pools',
        rows: [
          rowFrom('RAW-CLAIM ALTER ROLE + ALTER DATABASE (pg)', result, {
            unit: ' claims/s',
            verdict: 'info',
          }),
        ],
        notes: [
          `${settings.concurrency} admin sessions split over the ${pools.length} warm-fleet pools, ` +
            `${settings.durationMs / 1000} s after ${settings.warmupMs / 1000} s warm-up; each session claims its own ` +
            'warm role + database (made beforehand with the worker’s statements) again and again with the ' +
            `service’s claim batch (ALTER ROLE … WITH LOGIN CONNECTION LIMIT ${limit} PASSWORD '<new plain ` +
            `password>'; ALTER DATABASE … WITH CONNECTION LIMIT ${limit}, one round trip); Postgres derives each ` +
            'SCRAM verifier.',
          'It is what the pool servers can do for S1-warm: the catalog side of an allocation is bounded by RAW-TX.',
          `Mean ${result.latency.mean.toFixed(2)} ms, p90 ${result.latency.p90.toFixed(2)} ms, max ${result.latency.max.toFixed(1)} ms.`,
          'The bench’s warm roles and databases are left on the pools, which are removed at the end.',
          ...errorNotes(result),
        ],
      };
    } finally {
      // The warm roles and databases stay: the pools go at teardown, and dropping each would cost
      // a checkpoint (seconds each on this disk).
      await endAll(clients);
    }
  },
};

/**
 * The reading of the session profile, in numbers: how much catalog session time an allocation
 * took and where it went, against what the pools spent on claims and on the refill.
 */
function whereTheTimeGoes(sessions: [string, number][], perSec: number): string {
  const sum = (test: (label: string) => boolean) =>
    sessions.filter(([label]) => test(label)).reduce((n, [, v]) => n + v, 0);
  const catalog = (label: string) => label.startsWith('catalog, service:');
  const idleInTx = sum((l) => catalog(l) && l.includes('idle in transaction'));
  const locked = sum((l) => catalog(l) && l.includes('waiting for a lock'));
  const working = sum(catalog) - idleInTx - locked;
  const perAllocationMs = ((idleInTx + locked + working) / perSec) * 1000;
  return (
    `Reading the profile: the service’s catalog sessions were on average ${idleInTx.toFixed(1)} idle inside a ` +
    `transaction (the catalog waiting for the service’s next statement), ${locked.toFixed(1)} waiting for a row ` +
    `lock and ${working.toFixed(1)} running or flushing WAL: about ${fmtMs(perAllocationMs)} of catalog session ` +
    `time per allocation at ${fmtRate(perSec, ' alloc/s')}. The reservation is one statement (slot, warm claim ` +
    'or new row, audit event), so a pool’s row is held only while it runs and commits. On the pools, the ' +
    `refill’s statements kept ${sum((l) => l.startsWith('pools, refill')).toFixed(1)} admin sessions busy and ` +
    `the claims ${sum((l) => l.startsWith('pools, claim')).toFixed(1)}.`
  );
}

interface Done {
  instance: string;
  /** When the answer arrived, from the start of the measured phase. */
  atMs: number;
  latencyMs: number;
}

export const allocateWarm: Scenario = {
  id: 's1-warm-allocate',
  needs: ['raw-tx', 'warm-fleet', 'raw-claim'],
  async run(ctx: BenchContext) {
    const { stack, settings, state } = ctx;
    const fleet = await requireFleet(ctx);
    const catalog = await connectCatalog(stack);
    try {
      const done: Done[] = [];
      // The refill runs all along: one job per pool at a time (single-flight id), re-enqueued as
      // soon as the previous one has finished.
      let pumping = true;
      let enqueueErrors = 0;
      const pump = (async () => {
        while (pumping) {
          for (const pool of fleet.pools)
            await stack.queues
              .enqueue('refill-warm-databases', { server_id: pool.id })
              .catch(() => enqueueErrors++);
          await new Promise((r) => setTimeout(r, REFILL_EVERY_MS));
        }
      })();

      let activity: ActivitySampler | undefined;
      let sessions: Awaited<ReturnType<ActivitySampler['stop']>>;
      let result: LoadResult;
      let cpuBefore: CpuSnapshot | undefined;
      let cpuAfter: CpuSnapshot | undefined;
      let t0 = 0;
      try {
        activity = await sampleActivity(
          [
            {
              url: stack.catalogUrl,
              applicationName: 'database-service',
              classify: (row) =>
                row.state === 'idle' ? undefined : `catalog, service: ${describeWait(row)}`,
            },
            ...fleet.pools.map((p) => ({
              url: p.url(),
              applicationName: 'tenantdb',
              classify: (row: ActivityRow) =>
                row.state === 'idle'
                  ? undefined
                  : `pools, ${poolStatementKind(row.query)}: ${describeWait(row)}`,
            })),
          ],
          ACTIVITY_EVERY_MS,
        );
        cpuBefore = cpuSnapshot();
        t0 = performance.now();
        result = await closedLoop(
          { concurrency: settings.concurrency, durationMs: settings.warmAllocateMs },
          async () => {
            const ids = { instance_id: randomUUID(), customer_id: randomUUID(), plan_tier: 'standard' };
            const begin = performance.now();
            const res = await stack.api.post<Allocated>('/api/database/allocate', ids);
            if (res.status === 202) return ACCEPTED;
            if (res.status !== 200) return fail(httpError(res));
            const end = performance.now();
            done.push({ instance: ids.instance_id, atMs: end - t0, latencyMs: end - begin });
            return OK;
          },
        );
        cpuAfter = cpuSnapshot();
        sessions = await activity.stop();
        activity = undefined;
      } finally {
        pumping = false;
        await pump;
        await activity?.stop();
      }
      const redisPids = cpuBefore ? pidsOf(cpuBefore, 'redis-server', process.pid) : [];

      // Claimed or created, and where, from the service's own audit trail.
      const { rows: reserves } = await catalog.query<{
        instance_id: string;
        warm: boolean;
        db_server_id: string;
        occurred_at: Date;
      }>(
        `SELECT instance_id, coalesce((details->>'warm')::boolean, false) AS warm, db_server_id, occurred_at
           FROM audit_events
          WHERE action = 'allocation.reserve' AND instance_id = ANY($1::uuid[])
          ORDER BY occurred_at`,
        [done.map((d) => d.instance)],
      );
      const warmOf = new Map(reserves.map((r) => [r.instance_id, r.warm]));
      const claimed = done.filter((d) => warmOf.get(d.instance) === true);
      const createdNew = done.filter((d) => warmOf.get(d.instance) === false);
      // The claim-only phase: reservations (catalog clock) until the first that found no warm
      // database on the pool placement chose.
      const firstCreate = reserves.findIndex((r) => !r.warm);
      const phaseEnd = firstCreate === -1 ? reserves.length : firstCreate;
      const phaseSeconds =
        phaseEnd > 1
          ? (reserves[phaseEnd - 1]!.occurred_at.getTime() - reserves[0]!.occurred_at.getTime()) / 1000
          : Number.NaN;
      const accounting = await slotAccounting(catalog);
      const perPool = fleet.pools.map((p) => {
        const mine = reserves.filter((r) => r.db_server_id === p.id);
        return `${p.name} ${mine.length} (${mine.filter((r) => r.warm).length} warm)`;
      });
      const { rows: stock } = await catalog.query<{ name: string; n: number }>(
        `SELECT s.name, count(t.id)::int AS n FROM db_servers s
           LEFT JOIN tenant_databases t ON t.db_server_id = s.id AND t.status = 'warm' AND t.ready_at IS NOT NULL
          WHERE s.id = ANY($1::uuid[]) GROUP BY s.name ORDER BY s.name`,
        [fleet.pools.map((p) => p.id)],
      );

      // Throughput in windows: when the warm stock runs out, and what the rate is afterwards.
      const windowMs = Math.max(1_000, settings.warmAllocateMs / 6);
      const windows: string[] = [];
      for (let from = 0; from < result.elapsedMs - 1; from += windowMs) {
        const inside = done.filter((d) => d.atMs >= from && d.atMs < from + windowMs);
        const span = Math.min(windowMs, result.elapsedMs - from) / 1000;
        const warm = inside.filter((d) => warmOf.get(d.instance)).length;
        windows.push(
          `${(from / 1000).toFixed(0)}–${((from + span * 1000) / 1000).toFixed(0)} s: ${fmtRate(inside.length / span)} ` +
            `(${inside.length ? Math.round((warm / inside.length) * 100) : 0} % warm)`,
        );
      }

      const cpu =
        cpuBefore && cpuAfter
          ? cpuBreakdown(cpuBefore, cpuAfter, {
              pids: new Map<number, string>([
                [stack.servicePid, 'database-service'],
                [fleet.worker.pid, 'database-worker (refill)'],
                [process.pid, 'load generator (bench)'],
                ...redisPids.map((pid): [number, string] => [pid, 'Redis']),
              ]),
              postgresByPort: new Map<number, string>([
                [stack.catalog.port, 'catalog Postgres'],
                ...fleet.pools.map((p): [number, string] => [
                  p.port,
                  `pool Postgres (${fleet.pools.length} servers)`,
                ]),
                ...stack.pools.map((p): [number, string] => [
                  p.port,
                  'registered pools’ Postgres (cordoned)',
                ]),
              ]),
            })
          : undefined;

      const rawTx = state.rawTxPerSec;
      const rawClaimRate = state.rawClaimPerSec;
      const baseline = [
        rawTx === undefined ? undefined : `RAW-TX ${fmtRate(rawTx, ' tx/s')}`,
        rawClaimRate === undefined ? undefined : `RAW-CLAIM ${fmtRate(rawClaimRate, ' claims/s')}`,
      ].filter(Boolean);
      const comparison = [
        rawTx === undefined ? undefined : `${((result.throughput / rawTx) * 100).toFixed(0)} % of RAW-TX`,
        rawClaimRate === undefined
          ? undefined
          : `${((result.throughput / rawClaimRate) * 100).toFixed(0)} % of RAW-CLAIM`,
      ].filter(Boolean);
      const pass =
        result.throughput >= TARGET_PER_SEC &&
        result.errors === 0 &&
        result.accepted === 0 &&
        accounting.problems.length === 0;
      const claimLat = summarize(claimed.map((d) => d.latencyMs));
      const createLat = summarize(createdNew.map((d) => d.latencyMs));
      const rows: ResultRow[] = [
        rowFrom('S1-warm POST /allocate, warm pools', result, {
          unit: ' alloc/s',
          accepted: result.accepted,
          ...(baseline.length ? { baseline: baseline.join('; ') } : {}),
          ...(comparison.length ? { comparison: comparison.join('; ') } : {}),
          target: `≥ ${TARGET_PER_SEC} alloc/s, no errors, no 202, no over-commit`,
          verdict: pass ? 'PASS' : 'FAIL',
        }),
        {
          name: 'S1-warm: claimed a warm database',
          requests: claimed.length,
          p50Ms: claimLat.p50,
          p95Ms: claimLat.p95,
          p99Ms: claimLat.p99,
          errors: 0,
          comparison: Number.isNaN(phaseSeconds)
            ? undefined
            : `claim-only phase ${fmtRate(phaseEnd / phaseSeconds, ' alloc/s')} over ${phaseSeconds.toFixed(1)} s`,
          verdict: 'info',
        },
        {
          name: 'S1-warm: created a database',
          requests: createdNew.length,
          p50Ms: createLat.p50,
          p95Ms: createLat.p95,
          p99Ms: createLat.p99,
          errors: 0,
          verdict: 'info',
        },
      ];

      return {
        id: 's1-warm-allocate',
        title: 'S1-warm: sustained allocation with warm databases and the refill running',
        rows,
        notes: [
          `${settings.concurrency} HTTP clients for ${settings.warmAllocateMs / 1000} s, no warm-up (it would spend ` +
            'the warm stock); a fresh instance_id per request, plan "standard". The pools are the warm-fleet ones ' +
            `(${fleet.pools.length} local pools, Postgres defaults with fsync on), each holding ` +
            `${fleet.warmPerPool} ready warm databases at the start.`,
          `Refill all along: every ${REFILL_EVERY_MS} ms the bench enqueues \`refill-warm-databases\` for each pool; ` +
            'the worker runs one per pool at a time (single-flight job id), each making the missing warm databases ' +
            `one after another. Measured refill rate when the fleet was filled: ${fmtRate(fleet.refillPerSec, ' db/s')}.` +
            (enqueueErrors ? ` ${enqueueErrors} enqueues failed.` : ''),
          `Claimed vs created (audit_events \`allocation.reserve\` details.warm): ${claimed.length} claimed a warm ` +
            `database, ${createdNew.length} created one. Per pool: ${perPool.join(', ')}. Ready warm databases left: ` +
            `${stock.map((s) => `${s.name} ${s.n}`).join(', ')}.`,
          Number.isNaN(phaseSeconds)
            ? 'No claim-only phase: the first reservations already created databases.'
            : `Claim-only phase (catalog reservation times, until the first reservation found no warm database on the ` +
              `pool placement chose): ${phaseEnd} allocations in ${phaseSeconds.toFixed(2)} s, ` +
              `${fmtRate(phaseEnd / phaseSeconds, ' alloc/s')}.`,
          `Throughput by ${(windowMs / 1000).toFixed(0)}-s window of answers: ${windows.join('; ')}.`,
          `Slot accounting after the run, over all ${accounting.servers} servers (current_instances ≤ max_instances ` +
            'and equal to the rows in creating, ready or releasing): ' +
            (accounting.problems.length
              ? `**${accounting.problems.join('; ')}**` +
                (accounting.problems.some((p) => !fleet.pools.some((f) => p.startsWith(`${f.name}:`)))
                  ? ' — on a server S1-warm does not place on, so an earlier scenario left it so.'
                  : '.')
              : 'consistent, no over-commit.'),
          cpu
            ? `CPU during the run (${cpu.cores.toFixed(1)} cores): ` +
              cpu.shares
                .filter((s) => s.cores >= 0.005)
                .map((s) => `${s.label} ${s.cores.toFixed(2)}`)
                .join(', ') +
              `; idle ${cpu.idleCores.toFixed(2)}. From /proc: each Postgres server counts its postmaster, its backends ` +
              'and the backends it reaped.'
            : 'No CPU breakdown (no /proc).',
          `Sessions in use on average (pg_stat_activity every ${ACTIVITY_EVERY_MS} ms, ${sessions.samples} samples; ` +
            'the service’s catalog sessions, and the admin sessions on the pools by statement): ' +
            sessions.sessions
              .filter(([, n]) => n >= 0.05)
              .map(([label, n]) => `${label} ${n.toFixed(1)}`)
              .join('; ') +
            '.',
          whereTheTimeGoes(sessions.sessions, result.throughput) +
            (state.scramVerifierMs === undefined
              ? ''
              : ` Each claim also costs the service one SCRAM verifier (${fmtMs(state.scramVerifierMs)} of CPU in ` +
                `Node when measured alone), ${((result.throughput * state.scramVerifierMs) / 1000).toFixed(2)} ` +
                'cores at this rate.'),
          `Mean ${fmtMs(result.latency.mean)}, p90 ${fmtMs(result.latency.p90)}, max ${fmtMs(result.latency.max)}.`,
          ...errorNotes(result),
        ],
      };
    } finally {
      await catalog.end();
    }
  },
};

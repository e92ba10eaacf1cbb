// Signup burst (issue 7): a signup portal creates 500 instances through instance-service in 30 s
// (open loop) on an empty fleet, with database-worker replicas growing the fleet as demand
// arrives; each instance's time from its request to ready is taken from its callback. Target
// (the issue's): every create accepted (202) and every instance ready within
// SIGNUP_BURST.readyWithinS. The raw baseline is the same databases made with plain pg at the
// same rate on the servers the burst ended up on.
import { randomUUID } from 'node:crypto';
import type { Instance, InstanceCallback, Pool } from '@tenantdb/contracts';
import { startCallbackReceiver } from '@tenantdb/testkit';
import { SIGNUP_BURST } from '../../workloads';
import { ApiClient, httpError } from '../api';
import { type AdminTarget, adminTarget, connectCatalog, serverRow, waitFor } from '../catalog';
import { type BenchContext, errorNotes, rowFrom, type Scenario } from '../context';
import { ACCEPTED, closedLoop, fail, OK, openLoop, summarize } from '../load';
import { fmtMs, fmtRate, type ResultRow } from '../report';
import type { WorkerProcess } from '../stack';
import { rawCreateAtRate, SERVICE_CONNECTIONS_PER_SERVER } from './allocate';
import { signedMs } from './provision';
import { OPEN_LOOP_CONNECTIONS, QUICK_DURATION_S, scheduleNote } from './steady-allocation';

/** database-worker replicas growing the fleet (as `pnpm dev` runs them). */
const WORKERS = 2;
/** How long the fleet may take to settle before the burst (its first capacity planner run). */
const SETTLE_MS = 120_000;

interface Signup {
  id: string;
  customerId: string;
  /** When its create request was due (performance.now()): time to ready counts from here. */
  due: number;
}

export const signupBurst: Scenario = {
  id: 'signup-burst',
  async run(ctx: BenchContext) {
    const { stack, settings, state, log } = ctx;
    const durationS = settings.quick ? QUICK_DURATION_S : SIGNUP_BURST.durationS;
    const ratePerSec = SIGNUP_BURST.instances / SIGNUP_BURST.durationS;
    const count = Math.round(ratePerSec * durationS);
    const boundMs = SIGNUP_BURST.readyWithinS * 1000;
    const admin = new ApiClient(stack.serviceUrl, stack.adminToken, 4);
    const notes: string[] = [];

    // An empty fleet: no shared pool takes placements. The warm fleet's worker (100 warm databases
    // a pool) would refill the burst's new pools with its own setting: it goes first.
    if (state.fleet) {
      await state.fleet.worker.stop();
      state.fleet = undefined;
      notes.push(
        'The warm fleet’s worker was stopped first (it would refill new pools with 100 warm databases).',
      );
    }
    const listed = await admin.request<{ pools: Pool[] }>(
      'GET',
      '/api/database/admin/pools?status=active&server_type=shared&limit=500',
    );
    if (listed.status !== 200) throw new Error(`listing pools: ${httpError(listed)}`);
    for (const p of listed.body.pools) {
      const res = await admin.request('POST', `/api/database/admin/pools/${p.id}/cordon`);
      if (res.status !== 200) throw new Error(`cordoning ${p.name}: ${httpError(res)}`);
    }
    const cordoned = new Set(listed.body.pools.map((p) => p.id));

    const workers: WorkerProcess[] = [];
    for (let i = 0; i < WORKERS; i++) workers.push(await stack.startWorker({}));
    const catalog = await connectCatalog(stack);
    const receiver = await startCallbackReceiver();
    let portal: ApiClient | undefined;
    try {
      // A fleet at rest: the planner's first run has provisioned its headroom and nothing is starting.
      const fleetNow = async () =>
        (
          await catalog.query<{
            id: string;
            status: string;
            max_instances: number;
            current_instances: number;
          }>(
            `SELECT id, status, max_instances, current_instances FROM db_servers
              WHERE server_type = 'shared' AND status <> 'decommissioned'`,
          )
        ).rows.filter((r) => !cordoned.has(r.id));
      const provisioning = stack.queues.queue('provisioning');
      await waitFor(
        async () => {
          const fleet = await fleetNow();
          const busy = (await provisioning.getActiveCount()) + (await provisioning.getWaitingCount());
          return (
            busy === 0 &&
            fleet.some((r) => r.status === 'active') &&
            fleet.every((r) => r.status !== 'provisioning' && r.status !== 'initializing')
          );
        },
        { timeoutMs: SETTLE_MS, what: 'the fleet to settle', intervalMs: 250, worker: workers[0]! },
      );
      const before = await fleetNow();
      const service = await stack.startInstanceService({ TENANTDB_CALLBACK_ALLOWED_HOSTS: '127.0.0.1' });
      portal = new ApiClient(service.address, stack.portalToken, OPEN_LOOP_CONNECTIONS);

      log(`  ${count} signups at ${ratePerSec.toFixed(1)}/s`);
      const signups: Signup[] = [];
      const burst = await openLoop(
        { ratePerSec, requests: count, maxInFlight: count },
        async (_w, seq, due) => {
          const body = {
            customer_id: randomUUID(),
            name: `bench signup ${seq + 1}`,
            plan_tier: SIGNUP_BURST.planTier,
            callback_url: receiver.url,
          };
          const res = await portal!.post<Instance>('/api/v1/instances', body);
          if (res.status !== 202) return fail(httpError(res));
          signups.push({ id: res.body.id, customerId: body.customer_id, due });
          return ACCEPTED;
        },
      );
      const lastDue = Math.max(...signups.map((s) => s.due));
      await waitFor(async () => signups.every((s) => receiver.for(s.id).length > 0), {
        // Past the bound of the last instance nothing more can pass: stop waiting, count what came.
        timeoutMs: Math.max(0, lastDue + boundMs - performance.now()),
        what: 'the callbacks',
        intervalMs: 200,
      }).catch(() => log('  not every instance called back within the bound'));

      // Final states through the portal API (also where the instances landed).
      const finals = new Map<string, Instance>();
      await closedLoop(
        { concurrency: 8, durationMs: 120_000, maxRequests: signups.length },
        async (_w, seq) => {
          const s = signups[seq]!;
          const res = await portal!.get<Instance>(`/api/v1/instances/${s.id}?customer_id=${s.customerId}`);
          if (res.status !== 200) return fail(httpError(res));
          finals.set(s.id, res.body);
          return OK;
        },
      );
      const statusCounts = new Map<string, number>();
      for (const s of signups) {
        const status = finals.get(s.id)?.status ?? 'unread';
        statusCounts.set(status, (statusCounts.get(status) ?? 0) + 1);
      }

      const ready = signups.flatMap((s) => {
        // The first arrival is when the portal learnt of it.
        const first = receiver.for(s.id)[0];
        if (!first || (JSON.parse(first.body) as InstanceCallback).event !== 'instance.ready') return [];
        return [{ ...s, ms: first.at - s.due }];
      });
      const inBound = ready.filter((r) => r.ms <= boundMs).length;
      const ttr = summarize(ready.map((r) => r.ms));
      const serverSide = summarize(
        [...finals.values()]
          .filter((i) => i.ready_at)
          .map((i) => Date.parse(i.ready_at!) - Date.parse(i.created_at)),
      );
      const after = await fleetNow();

      // RAW: the same databases on the servers the burst used, request i where instance i landed.
      const targets = new Map<string, AdminTarget>();
      const { rows: hosts } = await catalog.query<{ id: string; host: string; port: number }>(
        `SELECT id, host, port FROM db_servers WHERE host IS NOT NULL AND status <> 'decommissioned'`,
      );
      const byAddress = new Map(hosts.map((h) => [`${h.host}:${h.port}`, h.id]));
      const placed = signups.map((s) => {
        const f = finals.get(s.id);
        return f?.db_host ? byAddress.get(`${f.db_host}:${f.db_port}`) : undefined;
      });
      for (const id of new Set(placed.filter((p): p is string => p !== undefined)))
        targets.set(id, adminTarget(stack, await serverRow(catalog, id)));
      const used = [...targets.values()];
      let raw: Awaited<ReturnType<typeof rawCreateAtRate>> | undefined;
      if (used.length > 0) {
        log(
          `  raw baseline: ${count} role + database at ${ratePerSec.toFixed(1)}/s on ${used.length} servers`,
        );
        raw = await rawCreateAtRate(
          Array.from({ length: count }, (_, i) => targets.get(placed[i] ?? '') ?? used[i % used.length]!),
          ratePerSec,
        );
      } else notes.push('No instance got a database: there is no server to run the raw baseline on.');

      const accepted = burst.accepted === count && burst.errors === 0;
      const pass = accepted && inBound === count;
      const target = `${count} × 202, all ready ≤ ${SIGNUP_BURST.readyWithinS} s`;
      const rows: ResultRow[] = [];
      if (raw)
        rows.push(
          rowFrom(`RAW-BURST role + database at ${ratePerSec.toFixed(1)}/s (pg)`, raw, {
            unit: ' db/s',
            verdict: 'info',
          }),
        );
      rows.push(
        rowFrom(`Signup burst ${SIGNUP_BURST.endpoint.create}`, burst, {
          unit: ' req/s',
          accepted: burst.accepted,
          target,
          verdict: pass ? 'PASS' : 'FAIL',
        }),
        {
          name: 'Signup burst: create → ready (callback)',
          requests: signups.length,
          throughput: ready.length
            ? ready.length / ((Math.max(...ready.map((r) => r.due + r.ms)) - signups[0]!.due) / 1000)
            : 0,
          unit: ' ready/s',
          p50Ms: ttr.p50,
          p95Ms: ttr.p95,
          p99Ms: ttr.p99,
          errors: signups.length - inBound,
          ...(raw
            ? {
                baseline: `RAW-BURST p50 ${fmtMs(raw.latency.p50)}, p95 ${fmtMs(raw.latency.p95)}`,
                comparison: `Δp50 ${signedMs(ttr.p50 - raw.latency.p50)}; Δp95 ${signedMs(ttr.p95 - raw.latency.p95)}`,
              }
            : {}),
          target,
          verdict: pass ? 'PASS' : 'FAIL',
        },
      );
      const capacity = (rs: typeof before) => rs.reduce((n, r) => n + r.max_instances, 0);
      return {
        id: 'signup-burst',
        title: `Signup burst: ${count} instances through instance-service in ${durationS} s on an empty fleet`,
        rows,
        notes: [
          ...notes,
          `Empty fleet: every active shared pool there was (${cordoned.size}) is cordoned through the admin API; ` +
            `${WORKERS} database-worker processes with their default capacity settings (pools of 50, headroom 10, ` +
            'at most 3 starting at once, 5 warm databases a pool, planner every 30 s; local driver, fsync on) then ' +
            `provision the headroom before the burst: ${before.length} pool(s), ${capacity(before)} slots. By the end ` +
            `of the run the planner had ${after.length} pool(s) (${capacity(after)} slots, ` +
            `${after.reduce((n, r) => n + r.current_instances, 0)} in use).`,
          'instance-service runs its own `main.ts` in a process of its own (migrations, API, `instances` queue ' +
            'consumer; LOG_LEVEL=warn, defaults otherwise: 20 jobs at a time), talking to database-service over ' +
            'loopback HTTP; database-service answers 202 with retry_after 5 s (its default) while pools start.',
          `Open loop: request i is due at i / ${ratePerSec.toFixed(2)} s, whatever the answers take; each is a new ` +
            'customer and instance (plan "standard") with a callback_url on the bench. POST latency runs from the ' +
            'due time to the answer; 202 is the endpoint’s success answer (the instance is pending).',
          'Create → ready: from the due time of the create request to the arrival of the signed `instance.ready` ' +
            'callback at the bench’s receiver (what a portal waits for); the row’s errors are instances not ready ' +
            `within ${SIGNUP_BURST.readyWithinS} s. Rate: ready instances from the first request to the last callback. ` +
            `Seen by instance-service itself (ready_at − created_at): p50 ${fmtMs(serverSide.p50)}, p95 ` +
            `${fmtMs(serverSide.p95)}, p99 ${fmtMs(serverSide.p99)}.`,
          `Final states through GET /api/v1/instances/{id}: ${[...statusCounts].map(([k, n]) => `${k} ${n}`).join(', ')}.`,
          `RAW-BURST, right after: the same ${count} CREATE ROLE … LOGIN PASSWORD + CREATE DATABASE … OWNER with ` +
            'plain pg, request i on the server instance i landed on, on the same schedule, through ' +
            `${SERVICE_CONNECTIONS_PER_SERVER} admin connections per server as database-service keeps; dropped ` +
            'afterwards. It leaves out what only the platform does: starting the pool servers (see S5 for one), ' +
            'the catalog, the queues, the 202 round trips and the callback.',
          scheduleNote('POST', burst),
          ...(raw ? [scheduleNote('RAW', raw)] : []),
          ...errorNotes(burst),
          ...(raw ? errorNotes(raw).map((n) => `RAW ${n}`) : []),
          `Rate and bound are \`SIGNUP_BURST\` in \`loadtests/workloads.ts\` (${fmtRate(ratePerSec)}, ` +
            `${SIGNUP_BURST.readyWithinS} s); loadtests/k6/signup-burst.js states the same.`,
        ],
      };
    } finally {
      await portal?.close();
      await receiver.close();
      await catalog.end();
      await admin.close();
    }
  },
};

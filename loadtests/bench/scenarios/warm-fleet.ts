// The fleet S3-warm and S1-warm run on: shared pools created through the admin API and
// provisioned by a database-worker with the local driver, then filled with warm databases by the
// worker's refill job. The two registered (external) pools are cordoned first, so that from here
// on every allocation lands on a local pool and no refill warms them. Its row is the refill rate:
// how fast this machine makes warm databases, which bounds any sustained claim rate.
import type { Pool } from '@tenantdb/contracts';
import { httpError } from '../api';
import { adminTarget, connectCatalog, readyWarm, serverRow, waitFor } from '../catalog';
import type { BenchContext, Scenario } from '../context';
import { summarize } from '../load';
import { fmtMs, fmtRate } from '../report';

const HOUR = String(3_600_000);
/**
 * How often the worker's planner and refill run. Refills are kept up by jobs the scenarios enqueue
 * per pool (single-flight by job id) rather than by a short schedule: a scheduled run is a new job
 * each period, so with runs longer than the period they overlap and over-fill (see the notes).
 */
const CAPACITY_INTERVAL_MS = HOUR;

export const warmFleet: Scenario = {
  id: 'warm-fleet',
  async run(ctx: BenchContext) {
    const { stack, settings, log } = ctx;
    const admin = (method: 'POST' | 'DELETE', path: string, body?: unknown) =>
      stack.api.request<{ pool: Pool }>(method, path, body, stack.adminToken);

    for (const p of stack.pools) {
      const res = await admin('POST', `/api/database/admin/pools/${p.id}/cordon`);
      if (res.status !== 200) throw new Error(`cordoning ${p.name}: ${httpError(res)}`);
    }
    // Queued before any worker runs: its planner then counts them as pending capacity instead of
    // provisioning a pool of its own for the cordoned fleet.
    const ids: string[] = [];
    for (let i = 0; i < settings.warmPools; i++) {
      const res = await admin('POST', '/api/database/admin/pools', {
        name: `warm-${i + 1}`,
        driver: 'local',
        max_instances: settings.warmPoolCapacity,
      });
      if (res.status !== 202) throw new Error(`creating warm-${i + 1}: ${httpError(res)}`);
      ids.push(res.body.pool.id);
    }

    const t0 = performance.now();
    const worker = await stack.startWorker({
      TENANTDB_WARM_DATABASES: String(settings.warmPerPool),
      TENANTDB_CAPACITY_INTERVAL_MS: String(CAPACITY_INTERVAL_MS),
      TENANTDB_HEALTH_INTERVAL_MS: HOUR,
      TENANTDB_RECONCILE_INTERVAL_MS: HOUR,
      TENANTDB_CLEANUP_INTERVAL_MS: HOUR,
    });
    const workerStartMs = performance.now() - t0;
    const catalog = await connectCatalog(stack);
    try {
      await waitFor(
        async () => {
          const rows = [];
          for (const id of ids) rows.push(await serverRow(catalog, id));
          const failed = rows.find((r) => r.status === 'error');
          if (failed) throw new Error(`${failed.name} failed to provision: ${failed.status_reason}`);
          return rows.every((r) => r.status === 'active');
        },
        { timeoutMs: 120_000, what: 'the warm pools to become active', intervalMs: 100, worker },
      );
      const activeMs = performance.now() - t0;
      log(
        `  ${ids.length} pools active after ${(activeMs / 1000).toFixed(1)} s; warming ${settings.warmPerPool} each`,
      );
      let lastLog = performance.now();
      await waitFor(
        async () => {
          const warm = await readyWarm(catalog, ids);
          if (performance.now() - lastLog > 10_000) {
            lastLog = performance.now();
            log(`  warm databases ready: ${[...warm.values()].join(', ')}`);
          }
          return ids.every((id) => (warm.get(id) ?? 0) >= settings.warmPerPool);
        },
        // ~20 per second per server at best on this machine, and four share two cores.
        {
          timeoutMs: 60_000 + settings.warmPools * settings.warmPerPool * 250,
          what: 'the warm stock',
          intervalMs: 250,
          worker,
        },
      );
      const stockMs = performance.now() - t0;
      // A refill still running would compete with the next scenario's clock.
      const provisioning = stack.queues.queue('provisioning');
      await waitFor(
        async () => (await provisioning.getActiveCount()) + (await provisioning.getWaitingCount()) === 0,
        {
          timeoutMs: 120_000,
          what: 'the provisioning queue to be idle',
          intervalMs: 100,
          worker,
        },
      );

      // Per warm database: from its row being written to it being claimable (ready_at).
      const { rows: made } = await catalog.query<{ ms: number; first: Date; last: Date; n: number }>(
        `SELECT extract(epoch FROM ready_at - created_at) * 1000 AS ms, created_at AS first, ready_at AS last
           FROM tenant_databases WHERE db_server_id = ANY($1::uuid[]) AND status = 'warm' AND ready_at IS NOT NULL`,
        [ids],
      );
      const first = Math.min(...made.map((r) => r.first.getTime()));
      const last = Math.max(...made.map((r) => r.last.getTime()));
      const refillPerSec = made.length / ((last - first) / 1000);
      const perServer = await readyWarm(catalog, ids);
      const pools = [];
      for (const id of ids) pools.push(adminTarget(stack, await serverRow(catalog, id)));
      ctx.state.fleet = { pools, warmPerPool: settings.warmPerPool, worker, refillPerSec };
      const lat = summarize(made.map((r) => Number(r.ms)));

      return {
        id: 'warm-fleet',
        title: 'Warm fleet: local pools provisioned by the worker and filled with warm databases',
        rows: [
          {
            name: `Warm refill, ${ids.length} pools in parallel (worker)`,
            requests: made.length,
            throughput: refillPerSec,
            unit: ' db/s',
            p50Ms: lat.p50,
            p95Ms: lat.p95,
            p99Ms: lat.p99,
            errors: 0,
            verdict: 'info',
          },
        ],
        notes: [
          `The registered pools (${stack.pools.map((p) => p.name).join(', ')}) are cordoned through the admin API; ` +
            `${ids.length} pools (driver local, max_instances ${settings.warmPoolCapacity.toLocaleString('en-US')}, ` +
            'Postgres defaults with fsync on) are created through POST /api/database/admin/pools and provisioned by a ' +
            `database-worker process with TENANTDB_WARM_DATABASES=${settings.warmPerPool} — as many as S1-warm’s ` +
            'run takes at the rates measured here, with the refill adding to them, and no more: each warm database ' +
            'costs about 0.1 s of this machine to make and again to delete.',
          `Worker ready ${fmtMs(workerStartMs)} after it was started; all pools active ${fmtMs(activeMs)} after it ` +
            `was started (provisioned concurrently); ${settings.warmPerPool} ready warm databases on each after ` +
            `${fmtMs(stockMs)} (${[...perServer.values()].join(', ')}).`,
          'Each promotion enqueues `refill-warm-databases` for its pool, which makes the missing warm databases one ' +
            'after another (catalog row, CREATE ROLE NOLOGIN + CREATE DATABASE + REVOKE/GRANT + reopen, ready_at); ' +
            `the ${ids.length} pools refill side by side. Rate: ready warm databases over the span from the first ` +
            `row written to the last made ready (${fmtRate(refillPerSec, ' db/s')}); p50/p99: one database, row to ready.`,
          ...([...perServer.values()].some((n) => n > settings.warmPerPool)
            ? [
                'Some pools hold more than asked: the worker’s scheduled all-pools refill, which runs once when the ' +
                  'worker starts, reached a pool while that pool’s own refill (enqueued by its promotion) was still ' +
                  'running; each run counts the missing databases once, at its start, so together they over-fill.',
              ]
            : []),
          'The worker’s periodic planner and refill are set to an hour: the scenarios enqueue per-pool refills ' +
            '(`refill-warm-databases` with the pool’s server_id, single-flight by job id) where they need them. ' +
            'A short TENANTDB_CAPACITY_INTERVAL_MS was not used because a scheduled run is a new job each period: ' +
            'runs that outlast the period overlap (up to the provisioning queue’s concurrency of 4), each counts the ' +
            'missing databases once, and together they over-fill the pools.',
        ],
      };
    } finally {
      await catalog.end();
    }
  },
};

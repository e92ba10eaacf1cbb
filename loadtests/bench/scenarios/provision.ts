// What the S5 scenarios (one per driver) share: a database-worker that only runs the jobs they
// enqueue, the tenantdb sample (a db_servers row, provision-server enqueued, polled until active,
// decommissioned through the API outside the clock), rounds that alternate it with a raw sample,
// and the figures both report.
import { randomBytes } from 'node:crypto';
import type { ProvisionerDriver } from '@tenantdb/provisioners';
import type pg from 'pg';
import { httpError } from '../api';
import { serverRow, waitFor } from '../catalog';
import type { BenchContext } from '../context';
import { describeError, summarize } from '../load';
import type { WorkerProcess } from '../stack';

/** max_instances of each S5 pool: the worker's default pool size (TENANTDB_POOL_MAX_INSTANCES). */
export const MAX_INSTANCES = 50;
/** The worker's admin user on the servers it provisions (services/database-worker/src/jobs/provision-server.ts). */
export const ADMIN_USER = 'tenantdb_admin';
const HOUR = String(3_600_000);

/**
 * No warm databases (a refill after each promotion would compete with the next sample) and no
 * periodic work: the worker only runs the jobs the scenario enqueues.
 */
export const QUIET_WORKER_ENV: Readonly<Record<string, string>> = {
  TENANTDB_WARM_DATABASES: '0',
  TENANTDB_CAPACITY_INTERVAL_MS: HOUR,
  TENANTDB_HEALTH_INTERVAL_MS: HOUR,
  TENANTDB_RECONCILE_INTERVAL_MS: HOUR,
  TENANTDB_CLEANUP_INTERVAL_MS: HOUR,
};

export interface Timing {
  total: number;
  /** tenantdb: enqueue → row initializing (job picked up, the driver's create). Raw: its own first step. */
  first: number;
  /** tenantdb: initializing → active (login, pool hardening, row update). Raw: the rest, up to the login. */
  second: number;
}

export interface ProvisionSampler {
  sample(): Promise<Timing>;
  /** Mean time to decommission a sample's server (outside the clock). */
  meanRemoveMs(): number;
}

/**
 * The tenantdb side of S5: INSERT a shared pool row for `driver`; the clock runs from enqueueing
 * `provision-server` until the row reads active (polled every 5 ms). Then, outside the clock,
 * `afterActive` may look at the server (what the orchestrator recorded), and the server leaves
 * the fleet the way an operator removes it: DELETE → decommissioning → the worker's
 * decommission-server job removes it through the driver.
 */
export function provisionSampler(
  ctx: BenchContext,
  opts: {
    driver: ProvisionerDriver;
    catalog: pg.Client;
    worker: WorkerProcess;
    afterActive?: (server: { id: string; name: string }) => Promise<void>;
  },
): ProvisionSampler {
  const { stack } = ctx;
  const { driver, catalog, worker, afterActive } = opts;
  let removeMs = 0;
  let removals = 0;

  const remove = async (id: string, name: string) => {
    const row = await serverRow(catalog, id);
    if (row.status === 'provisioning' || row.status === 'initializing') {
      // A failed or timed-out sample: let the worker finish or fail before removing it.
      await waitFor(
        async () => !['provisioning', 'initializing'].includes((await serverRow(catalog, id)).status),
        { timeoutMs: 90_000, what: `${name} to leave provisioning`, worker },
      );
    }
    const res = await stack.api.request(
      'DELETE',
      `/api/database/admin/pools/${id}`,
      undefined,
      stack.adminToken,
    );
    if (res.status !== 202 && res.status !== 200)
      throw new Error(`decommissioning ${name}: ${httpError(res)}`);
    await waitFor(async () => (await serverRow(catalog, id)).status === 'decommissioned', {
      timeoutMs: 60_000,
      what: `${name} to be decommissioned`,
      worker,
    });
  };

  const sample = async (): Promise<Timing> => {
    const name = `bench-s5-${randomBytes(5).toString('hex')}`;
    const { rows } = await catalog.query<{ id: string }>(
      `INSERT INTO db_servers (name, driver, server_type, max_instances, status)
       VALUES ($1, $2, 'shared', $3, 'provisioning') RETURNING id`,
      [name, driver, MAX_INSTANCES],
    );
    const id = rows[0]!.id;
    const t0 = performance.now();
    let initializing: number | undefined;
    try {
      await stack.queues.enqueue('provision-server', { server_id: id });
      await waitFor(
        async () => {
          const row = await serverRow(catalog, id);
          if (row.status === 'initializing') initializing ??= performance.now();
          if (row.status === 'error') throw new Error(`provisioning failed: ${row.status_reason}`);
          return row.status === 'active';
        },
        { timeoutMs: 60_000, what: `${name} to become active`, intervalMs: 5, worker },
      );
      const t1 = performance.now();
      initializing ??= t1;
      await afterActive?.({ id, name });
      return { total: t1 - t0, first: initializing - t0, second: t1 - initializing };
    } finally {
      const r0 = performance.now();
      await remove(id, name);
      removeMs += performance.now() - r0;
      removals++;
    }
  };

  return { sample, meanRemoveMs: () => removeMs / Math.max(1, removals) };
}

export interface Rounds {
  tenantdb: Timing[];
  raw: Timing[];
  /** Failed recorded samples by description. */
  errors: { tenantdb: Map<string, number>; raw: Map<string, number> };
}

/**
 * One unrecorded warm-up round, then `samples` rounds of one tenantdb and one raw sample each,
 * alternating which goes first, so drift on the machine hits both. A failed recorded sample is
 * counted; a failed warm-up, or any failure once the worker has died, ends the scenario.
 */
export async function alternateRounds(opts: {
  samples: number;
  tenantdb: () => Promise<Timing>;
  raw: (round: number) => Promise<Timing>;
  worker: WorkerProcess;
  log: (line: string) => void;
  label: string;
}): Promise<Rounds> {
  const result: Rounds = { tenantdb: [], raw: [], errors: { tenantdb: new Map(), raw: new Map() } };
  const count = (m: Map<string, number>, err: unknown) => {
    const d = describeError(err);
    m.set(d, (m.get(d) ?? 0) + 1);
  };
  const rounds = 1 + opts.samples;
  for (let i = 0; i < rounds; i++) {
    const record = i >= 1;
    const runTenantdb = async () => {
      try {
        const t = await opts.tenantdb();
        if (record) result.tenantdb.push(t);
      } catch (err) {
        if (!record || !opts.worker.alive()) throw err;
        count(result.errors.tenantdb, err);
      }
    };
    const runRaw = async () => {
      try {
        const t = await opts.raw(i);
        if (record) result.raw.push(t);
      } catch (err) {
        if (!record) throw err;
        count(result.errors.raw, err);
      }
    };
    if (i % 2 === 0) {
      await runTenantdb();
      await runRaw();
    } else {
      await runRaw();
      await runTenantdb();
    }
    opts.log(`  ${opts.label} round ${i + 1}/${rounds}`);
  }
  return result;
}

export interface TimingStats {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  /** p50 of each part (see Timing). */
  firstP50: number;
  secondP50: number;
}

export function timingStats(ts: Timing[]): TimingStats {
  const { p50, p95, p99 } = summarize(ts.map((t) => t.total));
  return {
    count: ts.length,
    p50,
    p95,
    p99,
    firstP50: summarize(ts.map((t) => t.first)).p50,
    secondP50: summarize(ts.map((t) => t.second)).p50,
  };
}

export const errorCount = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

export const errorNotes = (m: Map<string, number>, what: string) =>
  [...m].map(([d, n]) => `${what} error ×${n}: ${d}`);

export const signedMs = (n: number) => `${n >= 0 ? '+' : ''}${n.toFixed(0)} ms`;

/** How the samples were taken, for the scenario's notes. */
export function roundsNote(samples: number, what: string): string {
  return (
    `One at a time: 1 unrecorded warm-up round, then ${samples} rounds of one ${what} and one RAW sample ` +
    'each, alternating which goes first. p95 is nearest-rank' +
    (samples < 20 ? `: with ${samples} samples it is the slowest one.` : '.')
  );
}

// Local pools of a scenario's own (moves, drains): every pool placing tenants now is cordoned, so
// the scenario's tenants land only where it says; a database-worker with the local driver makes
// the pools and runs their jobs (its periodic jobs an hour away, warm databases off, no grace for
// moved-away databases). `close` stops the worker, cordons the scenario's pools and opens the
// others again for the scenarios after it.
import type pg from 'pg';
import { httpError } from '../api';
import { serverRow, waitFor } from '../catalog';
import type { BenchContext } from '../context';
import type { WorkerProcess } from '../stack';

const HOUR = String(3_600_000);

export interface LocalPools {
  ids: string[];
  worker: WorkerProcess;
  close(): Promise<void>;
}

export async function createLocalPools(
  ctx: BenchContext,
  catalog: pg.Client,
  specs: { name: string; max: number; priority: number }[],
  workerEnv: Record<string, string> = {},
): Promise<LocalPools> {
  const { stack } = ctx;
  const admin = (method: 'POST', path: string, body?: unknown) =>
    stack.api.request<{ pool: { id: string } }>(method, path, body, stack.adminToken);
  const worker = await stack.startWorker({
    TENANTDB_WARM_DATABASES: '0',
    TENANTDB_CAPACITY_INTERVAL_MS: HOUR,
    TENANTDB_HEALTH_INTERVAL_MS: HOUR,
    TENANTDB_RECONCILE_INTERVAL_MS: HOUR,
    TENANTDB_CLEANUP_INTERVAL_MS: HOUR,
    TENANTDB_USAGE_SAMPLE_PERIOD_MS: HOUR,
    TENANTDB_MOVE_GRACE_MS: '0',
    ...workerEnv,
  });
  const { rows: placing } = await catalog.query<{ id: string }>(
    "SELECT id FROM db_servers WHERE status IN ('active', 'full')",
  );
  const ids: string[] = [];
  const close = async () => {
    for (const id of ids) await admin('POST', `/api/database/admin/pools/${id}/cordon`).catch(() => {});
    for (const { id } of placing)
      await admin('POST', `/api/database/admin/pools/${id}/uncordon`).catch(() => {});
    await worker.stop();
  };
  try {
    for (const { id } of placing) {
      const res = await admin('POST', `/api/database/admin/pools/${id}/cordon`);
      if (res.status !== 200) throw new Error(`cordoning ${id}: ${httpError(res)}`);
    }
    for (const spec of specs) {
      const res = await admin('POST', '/api/database/admin/pools', {
        name: spec.name,
        driver: 'local',
        max_instances: spec.max,
        priority: spec.priority,
      });
      if (res.status !== 202) throw new Error(`creating ${spec.name}: ${httpError(res)}`);
      ids.push(res.body.pool.id);
    }
    await waitFor(
      async () => {
        for (const id of ids) if ((await serverRow(catalog, id)).status !== 'active') return false;
        return true;
      },
      { timeoutMs: 120_000, what: `${specs.map((s) => s.name).join(', ')} to become active`, worker },
    );
  } catch (err) {
    await close();
    throw err;
  }
  return { ids, worker, close };
}

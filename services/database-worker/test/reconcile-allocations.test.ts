// reconcile's repair of allocations a crashed database-service left half done: a row stuck in
// creating (repaired once it has not been touched for TENANTDB_STALE_ALLOCATION_MS, never while its
// attempt still beats).
import type { TenantCredentials } from '@tenantdb/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config';
import type { JobContext } from '../src/context';
import { createWorker, type DatabaseWorker } from '../src/worker';
import { activePool, asAdmin, canLogin, type Fleet, newIds, startFleet } from './harness';

let fleet: Fleet;
let reconciler: DatabaseWorker;
let reconcile: (payload: unknown, ctx: JobContext) => Promise<unknown>;

beforeAll(async () => {
  fleet = await startFleet({ replicas: 1 });
  await activePool(fleet);
  // No scheduled job runs beside the test: reconcile is run by hand on a worker that is wired but
  // not consuming, with the default stale bound.
  await fleet.workers[0]!.stop();
  reconciler = await createWorker(loadConfig(fleet.env), fleet.workers[0]!.deps.logger);
  reconcile = reconciler.handlers.reconcile as typeof reconcile;
});
afterAll(async () => {
  await reconciler?.stop();
  await fleet?.close();
});

const once = () => reconcile({}, { job: {} as JobContext['job'], log: reconciler.deps.logger });

async function allocated() {
  const ids = newIds();
  const res = await fleet.api('POST', '/api/database/allocate', ids);
  expect(res.status).toBe(200);
  return { ids, body: res.body as TenantCredentials & { tenant_database_id: string } };
}

const rowOf = (instanceId: string) =>
  fleet.db
    .selectFrom('tenant_databases')
    .selectAll()
    .where('instance_id', '=', instanceId)
    .orderBy('created_at', 'desc')
    .executeTakeFirstOrThrow();

describe('reconcile of allocations stuck in creating', () => {
  it('repairs one not touched for longer than the (default, 2 min) bound in one run, and leaves a fresh one', async () => {
    const stale = await allocated();
    const fresh = await allocated();
    // A crash mid-create, 3 minutes ago (well inside the old 10-minute bound); and an attempt
    // still running, its heartbeat 20 s ago.
    const plant = (instanceId: string, ageMs: number) =>
      fleet.db
        .updateTable('tenant_databases')
        .set({ status: 'creating', ready_at: null, updated_at: new Date(Date.now() - ageMs) })
        .where('instance_id', '=', instanceId)
        .execute();
    await plant(stale.ids.instance_id, 180_000);
    await plant(fresh.ids.instance_id, 20_000);

    const summary = (await once()) as { allocations: number; errors: number };
    expect(summary.errors).toBe(0);
    expect(summary.allocations).toBeGreaterThanOrEqual(1);

    const repaired = await rowOf(stale.ids.instance_id);
    expect(repaired.status).toBe('failed');
    expect(await canLogin(stale.body)).toBe(false);
    const pool = (await fleet.servers('active')).find((s) => s.id === repaired.db_server_id)!;
    const [left] = await asAdmin<{ n: number }>(
      fleet,
      pool,
      `SELECT count(*)::int AS n FROM pg_database WHERE datname = '${repaired.db_name}'`,
    );
    expect(left!.n).toBe(0);

    expect((await rowOf(fresh.ids.instance_id)).status).toBe('creating');
    expect(await canLogin(fresh.body)).toBe(true);
    expect(loadConfig(fleet.env).TENANTDB_STALE_ALLOCATION_MS).toBeLessThanOrEqual(120_000);
  });
});

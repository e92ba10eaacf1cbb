// reconcile and a release of the same tenant at once. A release that is only slow looks stuck to
// reconcile once its row has sat in releasing past the stale deadline: both then drop the tenant
// on the pool server and both try to move the row. Each must end cleanly — reconcile drops
// through tenantOps, under the same drop lock as the release (without it Postgres failed the
// loser with "tuple concurrently updated" or "could not find tuple for role", see
// packages/pool-server/test/drop-race.test.ts), and one of them moves the row and frees the slot.
import { describePgError } from '@tenantdb/pool-server';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config';
import type { JobContext } from '../src/context';
import { createWorker, type DatabaseWorker } from '../src/worker';
import { activePool, asAdmin, type Fleet, newIds, sleep, startFleet } from './harness';

/** Stuck tenants, each released and reconciled at once, the release started a little later each round. */
const ROUNDS = 8;

let fleet: Fleet | undefined;
let reconciler: DatabaseWorker | undefined;
afterEach(async () => {
  await reconciler?.stop();
  reconciler = undefined;
  await fleet?.close();
  fleet = undefined;
});

describe('reconcile and a release of one stuck tenant at once', () => {
  it(`both end cleanly, the row released, the slot freed once and the tenant gone, in each of ${ROUNDS} rounds`, async () => {
    // fsync on, as on a real pool server: each drop's commit waits for its WAL flush, long enough
    // for the other drop to run into its half-done work (drop-race.test.ts).
    fleet = await startFleet({ replicas: 1, env: { TENANTDB_SERVER_SETTINGS: '' } });
    const f = fleet;
    const pool = await activePool(f);
    // No scheduled job of a running replica runs beside the test; reconcile is run by hand on a
    // worker that is wired but not consuming.
    await f.workers[0]!.stop();
    reconciler = await createWorker(loadConfig(f.env), f.workers[0]!.deps.logger);
    const reconcile = reconciler.handlers.reconcile;
    const ctx = (round: number): JobContext => ({
      job: {} as JobContext['job'],
      log: reconciler!.deps.logger.child({ round }),
    });
    const slots = async () =>
      (
        await f.db
          .selectFrom('db_servers')
          .select('current_instances')
          .where('id', '=', pool.id)
          .executeTakeFirstOrThrow()
      ).current_instances;
    const before = await slots();

    for (let round = 1; round <= ROUNDS; round++) {
      const ids = newIds();
      const allocated = await f.api('POST', '/api/database/allocate', ids);
      expect(allocated.status, `round ${round}`).toBe(200);
      const { db_name: dbName, db_user: dbUser } = allocated.body as { db_name: string; db_user: string };
      // A release under way whose row has not moved for longer than the stale deadline.
      await f.db
        .updateTable('tenant_databases')
        .set({ status: 'releasing', updated_at: new Date(Date.now() - 3_600_000) })
        .where('instance_id', '=', ids.instance_id)
        .where('status', '=', 'ready')
        .execute();

      const [released, reconciled] = await Promise.allSettled([
        sleep((round % 4) * 15).then(() => f.api('DELETE', `/api/database/allocations/${ids.instance_id}`)),
        reconcile({}, ctx(round)),
      ]);

      const failures: string[] = [];
      if (released.status === 'rejected') failures.push(`release: ${describePgError(released.reason)}`);
      else if (released.value.status !== 200)
        failures.push(`release: ${released.value.status} ${JSON.stringify(released.value.body)}`);
      if (reconciled.status === 'rejected') failures.push(`reconcile: ${describePgError(reconciled.reason)}`);
      else if ((reconciled.value as { errors?: number }).errors)
        failures.push(`reconcile: ${JSON.stringify(reconciled.value)}`);
      expect(failures, `round ${round}`).toEqual([]);

      const row = await f.db
        .selectFrom('tenant_databases')
        .select(['status', 'released_at'])
        .where('instance_id', '=', ids.instance_id)
        .executeTakeFirstOrThrow();
      expect(row.status, `round ${round}`).toBe('released');
      expect(row.released_at, `round ${round}`).not.toBeNull();
      expect(await slots(), `round ${round}: the slot freed once`).toBe(before);
      const [left] = await asAdmin<{ role: boolean; database: boolean }>(
        f,
        pool,
        `SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = '${dbUser}') AS role,
                EXISTS (SELECT FROM pg_database WHERE datname = '${dbName}') AS database`,
      );
      expect(left, `round ${round}`).toEqual({ role: false, database: false });
    }
  });
});

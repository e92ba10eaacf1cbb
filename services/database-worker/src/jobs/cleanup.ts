// cleanup-failed-servers (daily) removes servers in error that hold no tenants — including those
// that failed while provisioning — and decommission-server removes one emptied by an operator.
// Both go through the server's driver; external servers are only forgotten, never touched.
import type { DbServer } from '@tenantdb/catalog';
import { sql } from 'kysely';
import { driverFor, type JobContext, type WorkerDeps } from '../context';
import { removeObjectsOf } from './provision';

export function createRetirement(deps: WorkerDeps) {
  const { db, audit } = deps;

  /** Removes the server's objects, its warm rows, and marks it decommissioned. */
  async function retire(server: DbServer, action: string, log: JobContext['log']): Promise<void> {
    if (server.driver !== 'external') {
      const removed = await removeObjectsOf(driverFor(deps, server), server.id, server.orchestrator_ref);
      log.info({ db_server_id: server.id, name: server.name, removed }, 'server objects removed');
    } else {
      // The server itself stays (it is not ours), but the warm databases we made on it go.
      const warm = await db
        .selectFrom('tenant_databases')
        .select(['db_name', 'db_user'])
        .where('db_server_id', '=', server.id)
        .where('status', '=', 'warm')
        .execute();
      for (const w of warm) await deps.tenantOps.drop(server, { dbName: w.db_name, dbUser: w.db_user });
    }
    await db.transaction().execute(async (trx) => {
      // Warm databases went with the server; nobody owned them.
      await trx
        .deleteFrom('tenant_databases')
        .where('db_server_id', '=', server.id)
        .where('status', '=', 'warm')
        .execute();
      await trx
        .updateTable('db_servers')
        .set({ status: 'decommissioned', deleted_at: sql`now()`, updated_at: sql`now()` })
        .where('id', '=', server.id)
        .execute();
      await audit.record(
        { actor: 'database-worker', action, db_server_id: server.id, details: { name: server.name } },
        trx,
      );
    });
  }

  /** Servers that hold no tenant: no slot used and no live row (checked together, in SQL). */
  const empty = sql<boolean>`current_instances = 0 AND NOT EXISTS (
    SELECT 1 FROM tenant_databases t
     WHERE t.db_server_id = db_servers.id AND t.status IN ('creating', 'ready', 'releasing'))`;

  return {
    cleanupFailedServers: async (_payload: unknown, { log }: JobContext) => {
      const failed = await db
        .selectFrom('db_servers')
        .selectAll()
        .where('status', '=', 'error')
        .where(empty)
        .execute();
      let removed = 0;
      for (const server of failed) {
        try {
          await retire(server, 'server.cleanup', log);
          removed++;
        } catch (err) {
          log.warn({ err, db_server_id: server.id }, 'cleanup of a failed server failed; next run retries');
        }
      }
      return { removed, candidates: failed.length };
    },

    decommissionServer: async ({ server_id }: { server_id: string }, { log }: JobContext) => {
      const server = await db
        .selectFrom('db_servers')
        .selectAll()
        .where('id', '=', server_id)
        .where('status', '=', 'decommissioning')
        .where(empty)
        .executeTakeFirst();
      if (!server) return 'not decommissioning, or not empty';
      await retire(server, 'server.decommission', log);
      return 'decommissioned';
    },
  };
}

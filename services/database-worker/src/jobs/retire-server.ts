// What cleanup-failed-servers and decommission-server both end with: a server's objects removed
// through its driver (external servers are only forgotten, never touched), then its row.
import type { DbServer } from '@tenantdb/catalog';
import { driverFor, type JobContext, type WorkerDeps } from '../context';
import { removeObjectsOf } from './provision-server';

export type RetireServer = (server: DbServer, action: string, log: JobContext['log']) => Promise<void>;

export function retireServer(deps: WorkerDeps): RetireServer {
  const { db, retirement, audit, tenantOps } = deps;

  /** Removes the server's objects, its warm rows, and marks it decommissioned. */
  return async (server, action, log) => {
    if (server.driver !== 'external') {
      const removed = await removeObjectsOf(driverFor(deps, server), server.id, server.orchestrator_ref);
      log.info({ db_server_id: server.id, name: server.name, removed }, 'server objects removed');
    } else {
      // The server itself stays (it is not ours), but the warm databases we made on it go.
      const warm = await retirement.listWarmOn(server.id);
      for (const w of warm) await tenantOps.drop(server, { dbName: w.db_name, dbUser: w.db_user });
    }
    await db.transaction().execute(async (trx) => {
      // Warm databases went with the server; nobody owned them.
      await retirement.deleteWarmOn(server.id, trx);
      await retirement.markDecommissioned(server.id, trx);
      await audit.record(
        { actor: 'database-worker', action, db_server_id: server.id, details: { name: server.name } },
        trx,
      );
    });
  };
}

// cleanup-failed-servers (daily) removes servers in error that hold no tenants — including those
// that failed while provisioning — and retires dedicated servers whose tenant was released at
// least one cleanup interval ago (the same grace a failed server gets before it goes), and
// dedicated servers no one will use (a plan change's it did not retire itself): each is
// marked decommissioning (only while it still holds no tenant, in one statement) and removed by
// decommission-server, the path an operator's decommission takes.
import { SERVING_STATUSES } from '@tenantdb/catalog';
import type { JobContext, WorkerDeps } from '../context';
import { retireServer } from './retire-server';

export function cleanupFailedServers(deps: WorkerDeps) {
  const { db, retirement, servers, audit, queues, config } = deps;
  const retire = retireServer(deps);

  /**
   * Released dedicated servers, and ones no one will use (a plan change's that it did not retire
   * itself), → decommissioning, and their removal queued.
   */
  async function retireReleasedDedicated(log: JobContext['log']): Promise<number> {
    const releasedBefore = new Date(Date.now() - config.TENANTDB_CLEANUP_INTERVAL_MS);
    const released = [
      ...(await retirement.listReleasedDedicated(releasedBefore)),
      ...(await retirement.listUnusedDedicated()),
    ];
    let retiring = 0;
    for (const server of released) {
      const marked = await db.transaction().execute(async (trx) => {
        const row = await servers.markDecommissioning(
          server.id,
          SERVING_STATUSES,
          'its tenant was released or is on another server; retired by cleanup',
          trx,
        );
        if (row) {
          await audit.record(
            {
              actor: 'database-worker',
              action: 'server.retire_dedicated',
              db_server_id: server.id,
              instance_id: server.dedicated_to_instance_id,
              details: { name: server.name },
            },
            trx,
          );
        }
        return row;
      });
      if (!marked) continue; // allocated again meanwhile, or its status changed
      // A lost enqueue leaves it decommissioning; the operator's decommission queues it again.
      await queues.enqueue('decommission-server', { server_id: server.id });
      log.info({ db_server_id: server.id, name: server.name }, 'retiring a released dedicated server');
      retiring++;
    }
    return retiring;
  }

  return async (_payload: unknown, { log }: JobContext) => {
    const failed = await retirement.listEmptyIn('error');
    let removed = 0;
    for (const server of failed) {
      try {
        await retire(server, 'server.cleanup', log);
        removed++;
      } catch (err) {
        log.warn({ err, db_server_id: server.id }, 'cleanup of a failed server failed; next run retries');
      }
    }
    const retiring = await retireReleasedDedicated(log);
    return { removed, candidates: failed.length, retiring };
  };
}

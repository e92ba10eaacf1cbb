// cleanup-failed-servers (daily) removes servers in error that hold no tenants — including those
// that failed while provisioning.
import type { JobContext, WorkerDeps } from '../context';
import { retireServer } from './retire-server';

export function cleanupFailedServers(deps: WorkerDeps) {
  const { retirement } = deps;
  const retire = retireServer(deps);

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
    return { removed, candidates: failed.length };
  };
}

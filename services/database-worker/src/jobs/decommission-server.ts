// decommission-server removes a server an operator emptied and marked decommissioning.
import type { JobContext, WorkerDeps } from '../context';
import { retireServer } from './retire-server';

export function decommissionServer(deps: WorkerDeps) {
  const { retirement } = deps;
  const retire = retireServer(deps);

  return async ({ server_id }: { server_id: string }, { log }: JobContext) => {
    const server = await retirement.findEmptyIn(server_id, 'decommissioning');
    if (!server) return 'not decommissioning, or not empty';
    await retire(server, 'server.decommission', log);
    return 'decommissioned';
  };
}

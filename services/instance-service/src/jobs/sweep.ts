// sweep-instances (scheduled): every instance with work left gets its job enqueued again. Job ids
// are deterministic, so this is a no-op for every instance whose job is still queued; it brings
// back the ones whose job was lost (Redis restarted empty, an enqueue that failed after commit).
import type { InstanceServiceDeps } from '../context';
import type { JobContext } from './job-context';

const BATCH = 1000;

export function sweepInstances(deps: InstanceServiceDeps) {
  const { repo, queues } = deps;
  return async (_payload: object, ctx: JobContext): Promise<void> => {
    const rows = await repo.unsettled(BATCH);
    for (const row of rows) {
      const instance = { instance_id: row.id };
      if (row.status === 'pending' || row.status === 'waiting_for_database')
        await queues.enqueue('wait-for-database', instance);
      if (
        row.status === 'deleting' ||
        ((row.status === 'failed' || row.status === 'deleted') && !row.release_verified_at)
      )
        await queues.enqueue('release-database', instance);
      if (row.callback_status === 'pending') await queues.enqueue('deliver-callback', instance);
    }
    if (rows.length > 0) ctx.log.debug({ instances: rows.length }, 'sweep enqueued unsettled instances');
  };
}

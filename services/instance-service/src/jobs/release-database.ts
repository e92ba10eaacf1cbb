// release-database {instance_id}: for a failed, deleting or deleted instance, make sure
// database-service holds no live allocation for it — now, and again once every request sent
// before the instance failed or was deleted has had time to arrive (the settle time): an allocate
// that was in flight (database-service was slow, or stopped) can land after the first release.
// deleting → deleted once released. Retried with backoff for as long as database-service is away.

import {
  DatabaseServiceError,
  DatabaseServiceProtocolError,
  DatabaseServiceUnreachableError,
} from '@tenantdb/contracts';
import { RetryLater } from '@tenantdb/jobs';
import { type InstanceServiceDeps, settleMs } from '../context';
import { backoffSince, type JobContext } from './job-context';

const LIVE = new Set(['creating', 'ready', 'releasing']);

export function releaseDatabase(deps: InstanceServiceDeps) {
  const { config, repo, databaseService } = deps;
  const settle = settleMs(config);

  return async (payload: { instance_id: string }, ctx: JobContext): Promise<void> => {
    let row = await repo.findById(payload.instance_id);
    if (!row || row.release_verified_at) return;
    if (row.status !== 'failed' && row.status !== 'deleting' && row.status !== 'deleted') return;

    let releasedNow = false;
    try {
      const allocation = await databaseService.getAllocation(row.id);
      if (allocation && LIVE.has(allocation.status)) {
        if (allocation.status === 'creating')
          throw new RetryLater(1_000, 'the allocation is still being created');
        await databaseService.release(row.id);
        releasedNow = true;
        ctx.log.info({ instance_id: row.id, status: row.status }, 'database released');
      }
    } catch (err) {
      if (err instanceof RetryLater) throw err;
      if (
        err instanceof DatabaseServiceError ||
        err instanceof DatabaseServiceUnreachableError ||
        err instanceof DatabaseServiceProtocolError
      ) {
        // Nothing to give up on: cleanup waits for database-service however long it is away.
        throw new RetryLater(backoffSince(row.updated_at, 1_000, 60_000), err.message);
      }
      throw err;
    }

    if (row.status === 'deleting') row = (await repo.markDeleted(row.id)) ?? row;
    const since = row.deleted_at ?? row.failed_at ?? row.updated_at;
    const settledAt = since.getTime() + settle;
    if (Date.now() < settledAt)
      throw new RetryLater(settledAt - Date.now(), 'checking again after the settle time');
    // Released just now, after the settle time: look once more before calling it done.
    if (releasedNow) throw new RetryLater(1_000, 'released; checking once more');
    await repo.markReleaseVerified(row.id);
  };
}

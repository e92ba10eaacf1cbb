// sweep-instances (scheduled): every instance with work left gets its job enqueued again. Job ids
// are deterministic, so this is a no-op for every instance whose job is still queued; it brings
// back the ones whose job was lost (Redis restarted empty, an enqueue that failed after commit).
// Instances waiting or releasing and pending callbacks are read with a limit each: a backlog of
// undeliverable callbacks (a portal down for hours) never keeps a signup's lost job from coming back.
import type { InstanceServiceDeps } from '../context';
import type { JobContext } from './job-context';

const BATCH = 1000;

export function sweepInstances(deps: InstanceServiceDeps) {
  const { repo, queues } = deps;
  return async (_payload: object, ctx: JobContext): Promise<void> => {
    const rows = await repo.unsettled(BATCH);
    const waiting = rows.filter((r) => r.status === 'pending' || r.status === 'waiting_for_database');
    const releasing = rows.filter(
      (r) =>
        r.status === 'deleting' ||
        ((r.status === 'failed' || r.status === 'deleted') && !r.release_verified_at),
    );
    const callbacks = await repo.pendingCallbacks(BATCH);
    const ids = (list: readonly { id: string }[]) => list.map((r) => ({ instance_id: r.id }));
    await queues.enqueueMany('wait-for-database', ids(waiting));
    await queues.enqueueMany('release-database', ids(releasing));
    await queues.enqueueMany(
      'deliver-callback',
      callbacks.map((id) => ({ instance_id: id })),
    );
    if (rows.length + callbacks.length > 0)
      ctx.log.debug(
        { instances: rows.length, callbacks: callbacks.length },
        'sweep enqueued unsettled instances',
      );
  };
}

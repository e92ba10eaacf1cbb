// The worker's consumers of the three queues (@tenantdb/jobs' startConsumers: payloads checked
// against the job catalog, permanent failures stop at once, others retry with backoff), and the
// schedules of the periodic jobs.
import {
  type Consumers,
  type JobName,
  type JobPayload,
  type QueueName,
  startConsumers,
  WORKER_QUEUES,
  type WorkerJobName,
  type WorkerQueueName,
} from '@tenantdb/jobs';
import type { JobContext, WorkerDeps } from './context';

export type Handlers = {
  [N in WorkerJobName]: (payload: JobPayload<N>, ctx: JobContext) => Promise<unknown>;
};

const CONCURRENCY: Record<WorkerQueueName, number> = { provisioning: 4, monitoring: 8, maintenance: 1 };

export function startWorkers(deps: WorkerDeps, handlers: Handlers): Consumers {
  const { config, logger, metrics } = deps;
  return startConsumers({
    redisUrl: config.REDIS_URL,
    prefix: config.TENANTDB_QUEUE_PREFIX,
    queues: WORKER_QUEUES,
    concurrency: (queue) => CONCURRENCY[queue],
    lockMs: config.TENANTDB_JOB_LOCK_MS,
    shutdownDeadlineMs: config.TENANTDB_SHUTDOWN_DEADLINE_MS,
    logger,
    logFor: (job, queue) =>
      logger.child({ job_id: job.id, job_name: job.name, queue, attempt: job.attemptsMade + 1 }),
    run: (name, payload, job, log) =>
      (handlers[name] as (p: unknown, c: JobContext) => Promise<unknown>)(payload, { job, log }),
    onOutcome: (queue, name, outcome) => {
      if (outcome !== 'delayed') metrics.job(queue, name, outcome);
    },
  });
}

/**
 * Periodic jobs through BullMQ job schedulers: the scheduler id is fixed, so however many
 * replicas upsert it there is one schedule, and one job per period.
 */
export async function upsertSchedules(deps: WorkerDeps): Promise<void> {
  const { queues, config } = deps;
  const every: [QueueName, JobName, number][] = [
    ['monitoring', 'health-check-all', config.TENANTDB_HEALTH_INTERVAL_MS],
    ['provisioning', 'grow-shared-capacity', config.TENANTDB_CAPACITY_INTERVAL_MS],
    ['provisioning', 'refill-warm-databases', config.TENANTDB_CAPACITY_INTERVAL_MS],
    ['maintenance', 'reconcile', config.TENANTDB_RECONCILE_INTERVAL_MS],
    ['maintenance', 'cleanup-failed-servers', config.TENANTDB_CLEANUP_INTERVAL_MS],
  ];
  for (const [queue, name, ms] of every) {
    await queues
      .queue(queue)
      .upsertJobScheduler(
        name,
        { every: ms },
        { name, data: {}, opts: { removeOnComplete: true, removeOnFail: true, attempts: 1 } },
      );
  }
}

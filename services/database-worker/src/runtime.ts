// The worker's consumers of the three queues (@tenantdb/jobs' startConsumers: payloads checked
// against the job catalog, permanent failures stop at once, others retry with backoff), and the
// schedules of the periodic jobs.
import {
  type Consumers,
  type JobPayload,
  type KeptSchedules,
  keepSchedules,
  type Schedule,
  startConsumers,
  WORKER_QUEUES,
  type WorkerJobName,
  type WorkerQueueName,
} from '@tenantdb/jobs';
import type { JobContext, WorkerDeps } from './context';

export type Handlers = {
  [N in WorkerJobName]: (payload: JobPayload<N>, ctx: JobContext) => Promise<unknown>;
};

/**
 * Jobs at once per replica. Health checks may use the whole fleet-wide budget on one replica (the
 * monitoring queue's global concurrency holds the total: jobs/health-check.ts).
 */
const concurrency = (config: WorkerDeps['config']): Record<WorkerQueueName, number> => ({
  provisioning: 4,
  monitoring: config.TENANTDB_HEALTH_CONCURRENCY,
  maintenance: 1,
  data: config.TENANTDB_DATA_CONCURRENCY,
});

export function startWorkers(deps: WorkerDeps, handlers: Handlers): Consumers {
  const { config, logger, metrics } = deps;
  const perQueue = concurrency(config);
  return startConsumers({
    redisUrl: config.REDIS_URL,
    prefix: config.TENANTDB_QUEUE_PREFIX,
    queues: WORKER_QUEUES,
    concurrency: (queue) => perQueue[queue],
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

/** The periodic jobs (one schedule each, however many replicas), kept installed while the worker runs. */
export function keepWorkerSchedules(deps: WorkerDeps): Promise<KeptSchedules> {
  const { queues, config, logger } = deps;
  const schedules: Schedule[] = [
    { queue: 'monitoring', name: 'health-check-all', everyMs: config.TENANTDB_HEALTH_INTERVAL_MS },
    { queue: 'provisioning', name: 'grow-shared-capacity', everyMs: config.TENANTDB_CAPACITY_INTERVAL_MS },
    { queue: 'provisioning', name: 'refill-warm-databases', everyMs: config.TENANTDB_CAPACITY_INTERVAL_MS },
    { queue: 'maintenance', name: 'reconcile', everyMs: config.TENANTDB_RECONCILE_INTERVAL_MS },
    { queue: 'data', name: 'sample-usage-all', everyMs: config.TENANTDB_USAGE_SAMPLE_PERIOD_MS },
    { queue: 'data', name: 'schedule-backups', everyMs: config.TENANTDB_BACKUP_SCHEDULE_MS },
    { queue: 'data', name: 'verify-backups', everyMs: config.TENANTDB_BACKUP_DRILL_INTERVAL_MS },
    { queue: 'maintenance', name: 'cleanup-failed-servers', everyMs: config.TENANTDB_CLEANUP_INTERVAL_MS },
  ];
  return keepSchedules(queues, schedules, { checkEveryMs: config.TENANTDB_SCHEDULE_CHECK_MS, logger });
}

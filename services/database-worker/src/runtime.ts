// BullMQ consumers for the three queues: every payload is checked against the job catalog before
// its handler runs; permanent failures stop at once (UnrecoverableError), others retry with backoff.
import {
  isJobOf,
  type JobName,
  type JobPayload,
  parsePayload,
  type QueueName,
  WORKER_QUEUES,
  type WorkerJobName,
  type WorkerQueueName,
} from '@tenantdb/jobs';
import { UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { type JobContext, PermanentJobError, type WorkerDeps } from './context';

export type Handlers = {
  [N in WorkerJobName]: (payload: JobPayload<N>, ctx: JobContext) => Promise<unknown>;
};

const CONCURRENCY: Record<WorkerQueueName, number> = { provisioning: 4, monitoring: 8, maintenance: 1 };

export interface RunningWorkers {
  /** Stops taking jobs and waits for the ones in hand (bounded by the caller's deadline). */
  close(): Promise<void>;
  workers: Worker[];
}

export function startWorkers(deps: WorkerDeps, handlers: Handlers): RunningWorkers {
  const { config, logger, metrics } = deps;
  const connections: Redis[] = [];
  const workers = WORKER_QUEUES.map((queue) => {
    // Workers block on Redis: each gets its own connection, retrying forever while Redis is away.
    const connection = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null, enableOfflineQueue: true });
    connection.on('error', () => {});
    connections.push(connection);
    const worker = new Worker(
      queue,
      async (job) => {
        const log = logger.child({
          job_id: job.id,
          job_name: job.name,
          queue,
          attempt: job.attemptsMade + 1,
        });
        if (!isJobOf(WORKER_QUEUES, job.name)) throw new UnrecoverableError(`unknown job name "${job.name}"`);
        let payload: unknown;
        try {
          payload = parsePayload(job.name, job.data);
        } catch {
          throw new UnrecoverableError(`payload of ${job.name} does not match the job catalog`);
        }
        try {
          const handler = handlers[job.name] as (p: unknown, c: JobContext) => Promise<unknown>;
          const result = await handler(payload, { job, log });
          metrics.job(queue, job.name, 'completed');
          return result;
        } catch (err) {
          if (err instanceof PermanentJobError || err instanceof UnrecoverableError) {
            metrics.job(queue, job.name, 'failed');
            log.error({ reason: err.message }, 'job failed permanently');
            throw new UnrecoverableError(err.message);
          }
          metrics.job(queue, job.name, 'retry');
          log.warn({ err }, 'job failed; will retry');
          throw err;
        }
      },
      {
        connection,
        prefix: config.TENANTDB_QUEUE_PREFIX,
        concurrency: CONCURRENCY[queue],
        lockDuration: config.TENANTDB_JOB_LOCK_MS,
        stalledInterval: Math.max(1000, Math.floor(config.TENANTDB_JOB_LOCK_MS / 2)),
        maxStalledCount: 3,
      },
    );
    // While Redis is away every reconnect attempt errors: say so once a minute, not ten times a second.
    let lastWarned = 0;
    worker.on('error', (err) => {
      if (Date.now() - lastWarned < 60_000) return;
      lastWarned = Date.now();
      logger.warn({ err: { message: err.message }, queue }, 'worker error (repeats suppressed for a minute)');
    });
    return worker;
  });

  return {
    workers,
    async close() {
      // Let jobs in hand finish within the deadline; then force: their locks lapse and another
      // replica picks them up (handlers are idempotent). Redis being down must not hang shutdown.
      const graceful = Promise.all(workers.map((w) => w.close()));
      let timer: NodeJS.Timeout | undefined;
      const inTime = await Promise.race([
        graceful.then(() => true),
        new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), config.TENANTDB_SHUTDOWN_DEADLINE_MS);
        }),
      ]);
      clearTimeout(timer);
      if (!inTime) {
        logger.warn(
          { deadline_ms: config.TENANTDB_SHUTDOWN_DEADLINE_MS },
          'jobs still running at the deadline; closing anyway',
        );
        await Promise.race([
          Promise.all(workers.map((w) => w.close(true))),
          new Promise((r) => setTimeout(r, 2_000)),
        ]);
      }
      for (const c of connections) c.disconnect();
    },
  };
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

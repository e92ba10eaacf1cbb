// The BullMQ consumer of the `instances` queue, inside every instance-service replica. Payloads are
// checked against the job catalog before a handler runs; RetryLater moves the job to delayed
// (no attempt counted); PermanentJobError stops it; anything else retries with backoff.
import {
  INSTANCE_QUEUES,
  type InstanceJobName,
  isJobOf,
  type JobPayload,
  parsePayload,
} from '@tenantdb/jobs';
import { DelayedError, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { InstanceServiceDeps } from '../context';
import { deliverCallback } from './deliver-callback';
import { type JobContext, PermanentJobError, RetryLater } from './job-context';
import { releaseDatabase } from './release-database';
import { sweepInstances } from './sweep';
import { waitForDatabase } from './wait-for-database';

export type InstanceHandlers = {
  [N in InstanceJobName]: (payload: JobPayload<N>, ctx: JobContext) => Promise<void>;
};

export interface Consumer {
  /** Stops taking jobs; jobs in hand finish within the shutdown deadline, then it closes anyway. */
  close(): Promise<void>;
}

export function createHandlers(deps: InstanceServiceDeps): InstanceHandlers {
  return {
    'wait-for-database': waitForDatabase(deps),
    'release-database': releaseDatabase(deps),
    'deliver-callback': deliverCallback(deps),
    'sweep-instances': sweepInstances(deps),
  };
}

export async function startConsumer(deps: InstanceServiceDeps): Promise<Consumer> {
  const { config, logger, queues } = deps;
  const handlers = createHandlers(deps);
  const [queue] = INSTANCE_QUEUES;

  // One schedule however many replicas upsert it (fixed scheduler id).
  await queues.queue(queue).upsertJobScheduler(
    'sweep-instances',
    { every: config.TENANTDB_INSTANCE_SWEEP_INTERVAL_MS },
    {
      name: 'sweep-instances',
      data: {},
      opts: { removeOnComplete: true, removeOnFail: true, attempts: 1 },
    },
  );

  // The consumer blocks on Redis: its own connection, waiting Redis out while it is away.
  const connection = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null, enableOfflineQueue: true });
  connection.on('error', () => {});
  const worker = new Worker(
    queue,
    async (job, token) => {
      const log = logger.child({ job_id: job.id, job_name: job.name, attempt: job.attemptsMade + 1 });
      if (!isJobOf(INSTANCE_QUEUES, job.name)) throw new UnrecoverableError(`unknown job name "${job.name}"`);
      let payload: unknown;
      try {
        payload = parsePayload(job.name, job.data);
      } catch {
        throw new UnrecoverableError(`payload of ${job.name} does not match the job catalog`);
      }
      try {
        const handler = handlers[job.name] as (p: unknown, c: JobContext) => Promise<void>;
        await handler(payload, { jobId: job.id ?? '', log });
      } catch (err) {
        if (err instanceof RetryLater) {
          log.debug({ delay_ms: err.delayMs, reason: err.message }, 'not done yet; again later');
          await job.moveToDelayed(Date.now() + err.delayMs, token);
          throw new DelayedError();
        }
        if (err instanceof PermanentJobError || err instanceof UnrecoverableError) {
          log.error({ reason: err.message }, 'job failed permanently');
          throw new UnrecoverableError(err.message);
        }
        log.warn({ err }, 'job failed; will retry');
        throw err;
      }
    },
    {
      connection,
      prefix: config.TENANTDB_QUEUE_PREFIX,
      concurrency: config.TENANTDB_INSTANCE_JOB_CONCURRENCY,
      lockDuration: config.TENANTDB_JOB_LOCK_MS,
      stalledInterval: Math.max(1000, Math.floor(config.TENANTDB_JOB_LOCK_MS / 2)),
      maxStalledCount: 3,
    },
  );
  let lastWarned = 0;
  worker.on('error', (err) => {
    if (Date.now() - lastWarned < 60_000) return;
    lastWarned = Date.now();
    logger.warn({ err: { message: err.message } }, 'consumer error (repeats suppressed for a minute)');
  });

  return {
    async close() {
      let timer: NodeJS.Timeout | undefined;
      const inTime = await Promise.race([
        worker.close().then(() => true),
        new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), config.TENANTDB_SHUTDOWN_DEADLINE_MS);
        }),
      ]);
      clearTimeout(timer);
      if (!inTime) {
        logger.warn('jobs still running at the deadline; closing anyway');
        await Promise.race([worker.close(true), new Promise((r) => setTimeout(r, 2_000))]);
      }
      connection.disconnect();
    },
  };
}

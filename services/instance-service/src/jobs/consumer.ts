// The BullMQ consumers of the `instances` and `callbacks` queues, inside every instance-service replica
// (@tenantdb/jobs' startConsumers): payloads are checked against the job catalog before a handler
// runs; RetryLater moves the job to delayed (no attempt counted); PermanentJobError stops it;
// anything else retries with backoff.
import {
  INSTANCE_QUEUES,
  type InstanceJobName,
  type JobPayload,
  keepSchedules,
  startConsumers,
} from '@tenantdb/jobs';
import type { InstanceServiceDeps } from '../context';
import { deliverCallback } from './deliver-callback';
import { deliverTenantEvent } from './deliver-tenant-event';
import type { JobContext } from './job-context';
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
    'deliver-tenant-event': deliverTenantEvent(deps),
    'sweep-instances': sweepInstances(deps),
  };
}

export async function startConsumer(deps: InstanceServiceDeps): Promise<Consumer> {
  const { config, logger, queues } = deps;
  const handlers = createHandlers(deps);
  const queue = 'instances' as const;

  // One schedule however many replicas install it (fixed scheduler id), kept while this runs.
  const schedules = await keepSchedules(
    queues,
    [{ queue, name: 'sweep-instances', everyMs: config.TENANTDB_INSTANCE_SWEEP_INTERVAL_MS }],
    { checkEveryMs: config.TENANTDB_SCHEDULE_CHECK_MS, logger },
  );
  const consumers = startConsumers({
    redisUrl: config.REDIS_URL,
    prefix: config.TENANTDB_QUEUE_PREFIX,
    queues: INSTANCE_QUEUES,
    // Callbacks wait on receivers the portal runs: their own slots, never the signups'.
    concurrency: (q) =>
      q === 'callbacks' ? config.TENANTDB_CALLBACK_CONCURRENCY : config.TENANTDB_INSTANCE_JOB_CONCURRENCY,
    lockMs: config.TENANTDB_JOB_LOCK_MS,
    shutdownDeadlineMs: config.TENANTDB_SHUTDOWN_DEADLINE_MS,
    logger,
    logFor: (job) => logger.child({ job_id: job.id, job_name: job.name, attempt: job.attemptsMade + 1 }),
    run: (name, payload, job, log) =>
      (handlers[name] as (p: unknown, c: JobContext) => Promise<void>)(payload, { jobId: job.id ?? '', log }),
  });
  return {
    close: () => {
      schedules.stop();
      return consumers.close();
    },
  };
}

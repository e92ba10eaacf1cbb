import { type JobsOptions, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import {
  JOBS,
  type JobName,
  type JobPayload,
  jobIdFor,
  parsePayload,
  QUEUES,
  type QueueName,
  SINGLE_FLIGHT,
} from './job-definitions';

export interface Queues {
  /** Adds a job through its definition: payload validated, deterministic id, retry policy. */
  enqueue<N extends JobName>(
    name: N,
    payload: JobPayload<N>,
    opts?: Pick<JobsOptions, 'delay'>,
  ): Promise<string>;
  /**
   * Adds many jobs of one name in one Redis round trip (addBulk), each as enqueue would: a job
   * whose deterministic id is already queued is not added again. Returns the ids.
   */
  enqueueMany<N extends JobName>(name: N, payloads: readonly JobPayload<N>[]): Promise<string[]>;
  queue(name: QueueName): Queue;
  /** The Redis connection the queues share (workers open their own). */
  connection: Redis;
  /** The key prefix of every queue (TENANTDB_QUEUE_PREFIX); other keys of the platform use it too. */
  prefix: string;
  /** PING with a short deadline: false when Redis cannot be reached. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

const DEFAULT_JOB_OPTIONS: JobsOptions = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 2_000 },
  removeOnComplete: true,
  // Failed jobs stay a week for inspection; single-flight jobs are removed so they can run again.
  removeOnFail: { age: 7 * 24 * 3600 },
};

export const QUEUE_DEFAULTS = DEFAULT_JOB_OPTIONS;

/**
 * Redis could not take the job (down, unreachable, or not answering in time). The code is what
 * the HTTP error handler keys on to answer 503 instead of 500, without depending on this package.
 */
export class QueueUnavailableError extends Error {
  readonly code = 'EQUEUE_UNAVAILABLE';
  constructor(reason: string) {
    super(`job queue unavailable: ${reason}`);
    this.name = 'QueueUnavailableError';
  }
}

/** How long an add may wait for Redis: BullMQ waits for a connection that never came up forever. */
const ENQUEUE_TIMEOUT_MS = 5_000;

export function createRedisConnection(url: string, opts: { failFast: boolean }): Redis {
  return new Redis(url, {
    // API processes answer 503 at once while Redis is down (no offline queue); workers wait it out.
    enableOfflineQueue: !opts.failFast,
    maxRetriesPerRequest: opts.failFast ? 1 : null,
    connectTimeout: 5_000,
    retryStrategy: (times) => Math.min(times * 200, 2_000),
  });
}

/** A Redis write that does not land within the deadline, or fails, is a QueueUnavailableError. */
export async function withinDeadline<T>(added: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      added,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new QueueUnavailableError(`Redis did not answer within ${ENQUEUE_TIMEOUT_MS} ms`)),
          ENQUEUE_TIMEOUT_MS,
        );
      }),
    ]);
  } catch (err) {
    added.catch(() => {}); // a late rejection of the abandoned add is not unhandled
    if (err instanceof QueueUnavailableError) throw err;
    throw new QueueUnavailableError(err instanceof Error ? err.message : String(err));
  } finally {
    clearTimeout(timer);
  }
}

export function createQueues(opts: { redisUrl: string; prefix?: string; failFast?: boolean }): Queues {
  const connection = createRedisConnection(opts.redisUrl, { failFast: opts.failFast ?? true });
  connection.on('error', () => {}); // reported through readiness, not as unhandled errors
  const prefix = opts.prefix ?? 'tenantdb';
  const queues = new Map<QueueName, Queue>(
    QUEUES.map((name) => [
      name,
      new Queue(name, { connection, prefix, defaultJobOptions: DEFAULT_JOB_OPTIONS }),
    ]),
  );
  for (const q of queues.values()) q.on('error', () => {});

  /** What its definition says about a job: its id, attempts and single-flight removal. */
  const jobOptions = <N extends JobName>(
    name: N,
    data: JobPayload<N>,
    extra?: Pick<JobsOptions, 'delay'>,
  ) => {
    const spec: { queue: QueueName; attempts?: number } = JOBS[name];
    return {
      queue: queues.get(spec.queue)!,
      opts: {
        jobId: jobIdFor(name, data),
        ...(spec.attempts ? { attempts: spec.attempts } : {}),
        ...extra,
        ...(SINGLE_FLIGHT.has(name) ? { removeOnFail: true } : {}),
      } satisfies JobsOptions,
    };
  };

  return {
    async enqueue(name, payload, extra) {
      const data = parsePayload(name, payload);
      const { queue, opts: jobOpts } = jobOptions(name, data, extra);
      await withinDeadline(queue.add(name, data, jobOpts));
      return jobOpts.jobId;
    },
    async enqueueMany(name, payloads) {
      if (payloads.length === 0) return [];
      const jobs = payloads.map((payload) => {
        const data = parsePayload(name, payload);
        const { queue, opts } = jobOptions(name, data);
        return { queue, job: { name, data, opts } };
      });
      await withinDeadline(jobs[0]!.queue.addBulk(jobs.map((j) => j.job)));
      return jobs.map((j) => j.job.opts.jobId);
    },
    queue: (name) => queues.get(name)!,
    connection,
    prefix,
    async ping() {
      try {
        const answer = await Promise.race([
          connection.ping(),
          new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), 1_000)),
        ]);
        return answer === 'PONG';
      } catch {
        return false;
      }
    },
    async close() {
      // Bounded: closing waits on Redis, which may be the thing that is gone.
      await Promise.race([
        Promise.all([...queues.values()].map((q) => q.close())),
        new Promise((r) => setTimeout(r, 2_000).unref()),
      ]).catch(() => {});
      connection.disconnect();
    },
  };
}

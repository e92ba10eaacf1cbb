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
} from './catalog';

export interface Queues {
  /** Adds a job through the catalog: payload validated, deterministic id, retry policy. */
  enqueue<N extends JobName>(
    name: N,
    payload: JobPayload<N>,
    opts?: Pick<JobsOptions, 'delay'>,
  ): Promise<string>;
  queue(name: QueueName): Queue;
  /** The Redis connection the queues share (workers open their own). */
  connection: Redis;
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

  return {
    async enqueue(name, payload, extra) {
      const data = parsePayload(name, payload);
      const jobId = jobIdFor(name, data);
      const singleFlight = SINGLE_FLIGHT.has(name);
      const spec: { queue: QueueName; attempts?: number } = JOBS[name];
      const added = queues.get(spec.queue)!.add(name, data, {
        jobId,
        ...(spec.attempts ? { attempts: spec.attempts } : {}),
        ...extra,
        ...(singleFlight ? { removeOnFail: true } : {}),
      });
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
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
      return jobId;
    },
    queue: (name) => queues.get(name)!,
    connection,
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

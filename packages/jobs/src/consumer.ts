// BullMQ consumers, shared by database-worker and instance-service. Every payload is checked
// against the job definitions before its handler runs; PermanentJobError stops a job at once
// (UnrecoverableError), RetryLater moves it to delayed without counting an attempt, anything else
// retries with the job's backoff. Shutdown lets jobs in hand finish up to a deadline.
import { DelayedError, type Job, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { isJobOf, type JobsOf, parsePayload, type QueueName } from './job-definitions';

/** A failure that retrying cannot fix: the job stops at once and the reason is recorded. */
export class PermanentJobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PermanentJobError';
  }
}

/**
 * Not done yet, and not a failure: run this job again after `delayMs` (BullMQ moves it to
 * delayed without counting an attempt).
 */
export class RetryLater extends Error {
  constructor(
    readonly delayMs: number,
    reason: string,
  ) {
    super(reason);
    this.name = 'RetryLater';
  }
}

/** What the consumers log through (a pino logger is one). */
export interface JobLog {
  debug(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export type JobOutcome = 'completed' | 'failed' | 'retry' | 'delayed';

export interface ConsumerOptions<Q extends QueueName, L extends JobLog> {
  redisUrl: string;
  prefix: string;
  /** One BullMQ worker per queue; a job whose name belongs to another queue fails for good. */
  queues: readonly Q[];
  concurrency: (queue: Q) => number;
  lockMs: number;
  shutdownDeadlineMs: number;
  /** For the consumers' own errors (Redis away: at most one line a minute per queue). */
  logger: JobLog;
  /** The logger a job's lines go to (its id, name and attempt bound). */
  logFor(job: Job, queue: Q): L;
  run(name: JobsOf<Q>, payload: unknown, job: Job, log: L): Promise<unknown>;
  onOutcome?(queue: Q, name: string, outcome: JobOutcome): void;
}

export interface Consumers {
  workers: Worker[];
  /** Stops taking jobs and waits for the ones in hand, up to the shutdown deadline; then forces. */
  close(): Promise<void>;
}

export function startConsumers<Q extends QueueName, L extends JobLog>(
  opts: ConsumerOptions<Q, L>,
): Consumers {
  const connections: Redis[] = [];
  const workers = opts.queues.map((queue) => {
    // Consumers block on Redis: each its own connection, waiting Redis out while it is away.
    const connection = new Redis(opts.redisUrl, { maxRetriesPerRequest: null, enableOfflineQueue: true });
    connection.on('error', () => {});
    connections.push(connection);
    const worker = new Worker(
      queue,
      async (job, token) => {
        const log = opts.logFor(job, queue);
        if (!isJobOf(opts.queues, job.name)) throw new UnrecoverableError(`unknown job name "${job.name}"`);
        let payload: unknown;
        try {
          payload = parsePayload(job.name, job.data);
        } catch {
          throw new UnrecoverableError(`payload of ${job.name} does not match its job definition`);
        }
        try {
          const result = await opts.run(job.name, payload, job, log);
          opts.onOutcome?.(queue, job.name, 'completed');
          return result;
        } catch (err) {
          if (err instanceof RetryLater) {
            log.debug({ delay_ms: err.delayMs, reason: err.message }, 'not done yet; again later');
            await job.moveToDelayed(Date.now() + err.delayMs, token);
            opts.onOutcome?.(queue, job.name, 'delayed');
            throw new DelayedError();
          }
          if (err instanceof PermanentJobError || err instanceof UnrecoverableError) {
            opts.onOutcome?.(queue, job.name, 'failed');
            log.error({ reason: err.message }, 'job failed permanently');
            throw new UnrecoverableError(err.message);
          }
          opts.onOutcome?.(queue, job.name, 'retry');
          log.warn({ err }, 'job failed; will retry');
          throw err;
        }
      },
      {
        connection,
        prefix: opts.prefix,
        concurrency: opts.concurrency(queue),
        lockDuration: opts.lockMs,
        stalledInterval: Math.max(1000, Math.floor(opts.lockMs / 2)),
        maxStalledCount: 3,
      },
    );
    let lastWarned = 0;
    worker.on('error', (err) => {
      if (Date.now() - lastWarned < 60_000) return;
      lastWarned = Date.now();
      opts.logger.warn(
        { err: { message: err.message }, queue },
        'consumer error (repeats suppressed for a minute)',
      );
    });
    return worker;
  });

  return {
    workers,
    async close() {
      // Jobs in hand may finish within the deadline; then force: their locks lapse and another
      // replica picks them up (handlers are idempotent). Redis being down must not hang shutdown.
      let timer: NodeJS.Timeout | undefined;
      const inTime = await Promise.race([
        Promise.all(workers.map((w) => w.close())).then(() => true),
        new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), opts.shutdownDeadlineMs);
        }),
      ]);
      clearTimeout(timer);
      if (!inTime) {
        opts.logger.warn(
          { deadline_ms: opts.shutdownDeadlineMs },
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

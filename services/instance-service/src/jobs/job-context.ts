// What instance-service's job handlers are given, and the two ways they end other than success.
import type { Logger } from '@tenantdb/observability';

export interface JobContext {
  jobId: string;
  log: Logger;
}

/**
 * Not done yet, and not a failure: run this job again after `delayMs` (BullMQ moves it to
 * delayed without counting an attempt). Waiting for a database, a release or a callback retry.
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

/** A failure that retrying cannot fix: the job stops at once. */
export class PermanentJobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PermanentJobError';
  }
}

/** Backoff that grows with how long something has been going on: a quarter of it, within bounds. */
export function backoffSince(since: Date, minMs: number, maxMs: number): number {
  return Math.round(Math.min(maxMs, Math.max(minMs, (Date.now() - since.getTime()) / 4)));
}

export function formatDuration(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  if (ms % 1000 === 0) return `${ms / 1000} s`;
  return `${ms} ms`;
}

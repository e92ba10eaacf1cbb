// What instance-service's job handlers are given. Besides success they end with RetryLater (not
// done yet: again after a delay, no attempt counted) or PermanentJobError, from @tenantdb/jobs.
import type { Logger } from '@tenantdb/observability';

export interface JobContext {
  jobId: string;
  log: Logger;
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

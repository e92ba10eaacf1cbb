// wait-for-database {instance_id}: allocate the instance's database. database-service answers
// 200 (ready), 202 (capacity is being provisioned: ask again after retry_after) or cannot be
// reached (asked again with backoff). The total wait is bounded by TENANTDB_DATABASE_WAIT_MS from
// the create request; past it the instance fails with the reason. Idempotent: the row is re-read
// on every run, and allocate is idempotent per instance_id.

import {
  type Allocated,
  DatabaseServiceError,
  DatabaseServiceProtocolError,
  DatabaseServiceUnreachableError,
} from '@tenantdb/contracts';
import { RetryLater } from '@tenantdb/jobs';
import type { InstanceServiceDeps } from '../context';
import type { InstanceRow } from '../db';
import { backoffSince, formatDuration, type JobContext } from './job-context';

const MIN_DELAY_MS = 250;
const MAX_UNAVAILABLE_DELAY_MS = 15_000;

export function waitForDatabase(deps: InstanceServiceDeps) {
  const { config, repo, queues, databaseService, metrics } = deps;
  const bound = config.TENANTDB_DATABASE_WAIT_MS;

  async function fail(row: InstanceRow, reason: string, ctx: JobContext): Promise<void> {
    const failed = await repo.markFailed(row.id, reason);
    if (!failed) return; // deleted meanwhile: the delete owns it now
    ctx.log.warn({ instance_id: row.id, reason }, 'instance failed');
    metrics.wait('failed');
    metrics.settled('failed', failed.created_at);
    // Whatever database-service may still allocate for it (a request in flight) is released.
    await queues.enqueue('release-database', { instance_id: row.id });
    if (failed.callback_status === 'pending')
      await queues.enqueue('deliver-callback', { instance_id: row.id });
  }

  async function ready(row: InstanceRow, answer: Allocated, ctx: JobContext): Promise<void> {
    // tenant_database_id is in the allocate answer; only a database-service older than that field
    // needs the allocation read for it (best effort: the database is there either way).
    const tenantDatabaseId =
      answer.tenant_database_id ??
      (await databaseService.getAllocation(row.id).catch(() => null))?.tenant_database_id ??
      null;
    const done = await repo.markReady(row.id, {
      tenant_database_id: tenantDatabaseId,
      db_server_id: answer.db_server_id,
      db_host: answer.db_host,
      db_port: answer.db_port,
      db_name: answer.db_name,
      db_user: answer.db_user,
    });
    if (!done) {
      // Deleted (or failed) while the database was being allocated: it must not outlive it.
      metrics.wait('abandoned');
      await queues.enqueue('release-database', { instance_id: row.id });
      return;
    }
    ctx.log.info({ instance_id: row.id, db_server_id: answer.db_server_id }, 'instance ready');
    metrics.wait('ready');
    metrics.settled('ready', done.created_at);
    if (done.callback_status === 'pending') await queues.enqueue('deliver-callback', { instance_id: row.id });
  }

  return async (payload: { instance_id: string }, ctx: JobContext): Promise<void> => {
    const row = await repo.findById(payload.instance_id);
    if (!row || row.status === 'ready') return;
    if (row.status !== 'pending' && row.status !== 'waiting_for_database') {
      // failed, deleting or deleted: a database allocated by an earlier run that died before it
      // could record the answer is released (a no-op when there is none).
      await queues.enqueue('release-database', { instance_id: row.id });
      return;
    }
    const deadline = row.created_at.getTime() + bound;
    if (Date.now() >= deadline) {
      const last = row.wait_reason ? `; last answer: ${row.wait_reason}` : '';
      await fail(row, `no database within ${formatDuration(bound)} (TENANTDB_DATABASE_WAIT_MS)${last}`, ctx);
      return;
    }
    /** Ask again after `ms`, but never later than the bound (the next run then fails it). */
    const again = (ms: number, reason: string) =>
      new RetryLater(Math.max(MIN_DELAY_MS, Math.min(ms, deadline - Date.now() + 50)), reason);

    let answer: Awaited<ReturnType<typeof databaseService.allocate>>;
    try {
      answer = await databaseService.allocate({
        instance_id: row.id,
        customer_id: row.customer_id,
        plan_tier: row.plan_tier,
      });
    } catch (err) {
      if (err instanceof DatabaseServiceError && !err.transient && err.status !== 401 && err.status !== 403) {
        // An answer that will not change: unknown plan, invalid request, a conflict.
        await fail(
          row,
          `database-service refused the allocation (${err.status}): ${err.body?.message ?? err.message}`,
          ctx,
        );
        return;
      }
      if (
        !(
          err instanceof DatabaseServiceError ||
          err instanceof DatabaseServiceUnreachableError ||
          err instanceof DatabaseServiceProtocolError
        )
      )
        throw err;
      // Unreachable, 5xx, 429, or our token refused (fixable by an operator within the bound).
      const reason =
        err instanceof DatabaseServiceError && !err.transient
          ? `database-service refused our token (${err.status}); check TENANTDB_ALLOCATE_TOKEN`
          : err.message;
      await repo.markWaiting(row.id, reason);
      metrics.wait('unavailable');
      const retryAfter = err instanceof DatabaseServiceError ? err.retryAfterSeconds : undefined;
      throw again(
        retryAfter !== undefined
          ? retryAfter * 1000
          : backoffSince(row.created_at, 500, MAX_UNAVAILABLE_DELAY_MS),
        reason,
      );
    }

    if (answer.status === 'provisioning') {
      await repo.markWaiting(row.id, answer.message);
      metrics.wait('provisioning');
      throw again(answer.retry_after * 1000, answer.message);
    }
    await ready(row, answer, ctx);
  };
}

// deliver-callback {instance_id}: POST the final state (ready or failed) to the instance's
// callback_url, signed with HMAC-SHA256 over the body (X-Tenantdb-Signature), until a 2xx or
// TENANTDB_CALLBACK_MAX_ATTEMPTS. The body is built from the row, so every attempt sends the same
// bytes; X-Tenantdb-Delivery lets a receiver drop a repeat (a 2xx that got lost on the way back).

import type { InstanceCallback } from '@tenantdb/contracts';
import { RetryLater } from '@tenantdb/jobs';
import { signBody } from '../callbacks/signature';
import type { InstanceServiceDeps } from '../context';
import type { InstanceRow } from '../db';
import type { JobContext } from './job-context';

const MAX_BACKOFF_MS = 5 * 60_000;

export function callbackBody(row: InstanceRow): InstanceCallback {
  const ready = row.ready_at !== null;
  return {
    event: ready ? 'instance.ready' : 'instance.failed',
    occurred_at: (row.ready_at ?? row.failed_at ?? row.updated_at).toISOString(),
    instance: {
      id: row.id,
      customer_id: row.customer_id,
      name: row.name,
      plan_tier: row.plan_tier,
      status: ready ? 'ready' : 'failed',
      error: ready ? null : row.error,
      db_host: row.db_host,
      db_port: row.db_port,
      db_name: row.db_name,
      db_user: row.db_user,
    },
  };
}

export function deliverCallback(deps: InstanceServiceDeps) {
  const { config, repo, callbackTargets, metrics } = deps;

  return async (payload: { instance_id: string }, ctx: JobContext): Promise<void> => {
    const row = await repo.findById(payload.instance_id);
    if (!row?.callback_url || row.callback_status !== 'pending') return;
    if (row.ready_at === null && row.failed_at === null) return; // not final yet (cannot happen)

    // The allow-list may have changed since the instance was created.
    const refused = callbackTargets.refuse(row.callback_url);
    if (refused) {
      await repo.settleCallback(row.id, 'failed', refused);
      metrics.callback('failed');
      return;
    }
    const attempt = await repo.countCallbackAttempt(row.id);
    if (attempt === undefined) return;
    const body = JSON.stringify(callbackBody(row));
    let problem: string;
    try {
      const response = await fetch(row.callback_url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'tenantdb-instance-service',
          'x-tenantdb-event': row.ready_at ? 'instance.ready' : 'instance.failed',
          'x-tenantdb-delivery': row.id,
          'x-tenantdb-signature': signBody(config.TENANTDB_CALLBACK_SECRET, body),
        },
        body,
        // A redirect could point anywhere (past the allow-list): it is an answer, not followed.
        redirect: 'manual',
        signal: AbortSignal.timeout(config.TENANTDB_CALLBACK_TIMEOUT_MS),
      });
      await response.body?.cancel().catch(() => {});
      if (response.status >= 200 && response.status < 300) {
        await repo.settleCallback(row.id, 'delivered', null);
        metrics.callback('delivered');
        ctx.log.info({ instance_id: row.id, attempt }, 'callback delivered');
        return;
      }
      problem = `the receiver answered ${response.status}`;
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      problem =
        e.name === 'TimeoutError'
          ? `no answer within ${config.TENANTDB_CALLBACK_TIMEOUT_MS} ms`
          : `could not reach the receiver (${e.cause?.code ?? e.message})`;
    }

    if (attempt >= config.TENANTDB_CALLBACK_MAX_ATTEMPTS) {
      await repo.settleCallback(row.id, 'failed', `gave up after ${attempt} attempts: ${problem}`);
      metrics.callback('failed');
      ctx.log.warn({ instance_id: row.id, attempt, problem }, 'callback not delivered; giving up');
      return;
    }
    await repo.noteCallbackError(row.id, problem);
    metrics.callback('retry');
    throw new RetryLater(Math.min(MAX_BACKOFF_MS, 1_000 * 2 ** (attempt - 1)), problem);
  };
}

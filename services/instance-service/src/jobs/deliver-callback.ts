// deliver-callback {instance_id}: POST the final state (ready or failed) to the instance's
// callback_url, signed with HMAC-SHA256 over the attempt's timestamp and the body
// (X-Tenantdb-Timestamp, X-Tenantdb-Signature), until a 2xx or TENANTDB_CALLBACK_MAX_ATTEMPTS.
// The host is resolved once per attempt, every address checked against the allow-list, and the
// connection made to the checked address (no DNS rebinding). The body is built from the row, so every attempt sends the same
// bytes; X-Tenantdb-Delivery lets a receiver drop a repeat (a 2xx that got lost on the way back).

import type { InstanceCallback } from '@tenantdb/contracts';
import { RetryLater } from '@tenantdb/jobs';
import { fetch } from 'undici';
import { pinnedDispatcher, type ResolvedAddress, resolveTarget } from '../callbacks/resolve-target';
import { signCallback } from '../callbacks/signature';
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

/**
 * One signed POST of `body` to `url` at the pinned (checked) address: undefined when answered
 * 2xx, else what went wrong. Every event a portal receives goes through here.
 */
export async function postSigned(
  deps: Pick<InstanceServiceDeps, 'config'>,
  target: { url: string; address: ResolvedAddress; event: string; deliveryId: string },
  body: string,
): Promise<string | undefined> {
  const { config } = deps;
  const timestamp = Math.floor(Date.now() / 1000);
  const dispatcher = pinnedDispatcher(target.address);
  try {
    const response = await fetch(target.url, {
      dispatcher,
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'tenantdb-instance-service',
        'x-tenantdb-event': target.event,
        'x-tenantdb-delivery': target.deliveryId,
        'x-tenantdb-timestamp': String(timestamp),
        'x-tenantdb-signature': signCallback(config.TENANTDB_CALLBACK_SECRET, timestamp, body),
      },
      body,
      // A redirect could point anywhere (past the allow-list): it is an answer, not followed.
      redirect: 'manual',
      signal: AbortSignal.timeout(config.TENANTDB_CALLBACK_TIMEOUT_MS),
    });
    await response.body?.cancel().catch(() => {});
    if (response.status >= 200 && response.status < 300) return undefined;
    return `the receiver answered ${response.status}`;
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    return e.name === 'TimeoutError'
      ? `no answer within ${config.TENANTDB_CALLBACK_TIMEOUT_MS} ms`
      : `could not reach the receiver (${e.cause?.code ?? e.message})`;
  } finally {
    await dispatcher.destroy().catch(() => {});
  }
}

export function deliverCallback(deps: InstanceServiceDeps) {
  const { config, repo, callbackTargets, resolveHost, metrics } = deps;
  const post = (row: InstanceRow, address: ResolvedAddress, body: string) =>
    postSigned(
      deps,
      {
        url: row.callback_url!,
        address,
        event: row.ready_at ? 'instance.ready' : 'instance.failed',
        deliveryId: row.id,
      },
      body,
    );

  async function refuse(id: string, reason: string, ctx: JobContext): Promise<void> {
    await repo.settleCallback(id, 'failed', reason);
    metrics.callback('failed');
    ctx.log.warn({ instance_id: id, reason }, 'callback refused');
  }

  return async (payload: { instance_id: string }, ctx: JobContext): Promise<void> => {
    const row = await repo.findById(payload.instance_id);
    if (!row?.callback_url || row.callback_status !== 'pending') return;
    if (row.ready_at === null && row.failed_at === null) return; // not final yet (cannot happen)

    // The allow-list may have changed since the instance was created.
    const refused = callbackTargets.refuse(row.callback_url);
    if (refused) return refuse(row.id, refused, ctx);
    const attempt = await repo.countCallbackAttempt(row.id);
    if (attempt === undefined) return;
    const body = JSON.stringify(callbackBody(row));
    const target = await resolveTarget(new URL(row.callback_url), callbackTargets, resolveHost);
    if (target.kind === 'refused') return refuse(row.id, target.reason, ctx);
    const problem = target.kind === 'unresolved' ? target.reason : await post(row, target.address, body);
    if (problem === undefined) {
      await repo.settleCallback(row.id, 'delivered', null);
      metrics.callback('delivered');
      ctx.log.info({ instance_id: row.id, attempt }, 'callback delivered');
      return;
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

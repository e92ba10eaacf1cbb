// deliver-tenant-event {instance_id, event, occurred_at, delivery_id}: a change of the instance's
// database access (quota ladder, suspension) that database-service or database-worker reported,
// POSTed to the instance's callback_url signed like the final-state callback (postSigned), with
// X-Tenantdb-Delivery the transition's delivery_id (one per transition; a receiver drops repeats).
// Retried with the job's backoff (the job catalog's attempts); the allow-list and address checks
// are the same. An instance without a callback_url, or gone, gets nothing.
import type { JobPayload } from '@tenantdb/jobs';
import { resolveTarget } from '../callbacks/resolve-target';
import type { InstanceServiceDeps } from '../context';
import { postSigned } from './deliver-callback';
import type { JobContext } from './job-context';

export function deliverTenantEvent(deps: InstanceServiceDeps) {
  const { repo, callbackTargets, resolveHost, metrics } = deps;
  return async (payload: JobPayload<'deliver-tenant-event'>, ctx: JobContext): Promise<void> => {
    const row = await repo.findById(payload.instance_id);
    if (!row?.callback_url) return;
    const refused = callbackTargets.refuse(row.callback_url);
    if (refused) {
      metrics.callback('failed');
      ctx.log.warn({ instance_id: row.id, event: payload.event, reason: refused }, 'tenant event refused');
      return;
    }
    const body = JSON.stringify({
      event: payload.event,
      occurred_at: payload.occurred_at,
      instance: { id: row.id, customer_id: row.customer_id, plan_tier: row.plan_tier, db_name: row.db_name },
    });
    const target = await resolveTarget(new URL(row.callback_url), callbackTargets, resolveHost);
    if (target.kind === 'refused') {
      metrics.callback('failed');
      ctx.log.warn(
        { instance_id: row.id, event: payload.event, reason: target.reason },
        'tenant event refused',
      );
      return;
    }
    const problem =
      target.kind === 'unresolved'
        ? target.reason
        : await postSigned(
            deps,
            {
              url: row.callback_url,
              address: target.address,
              event: payload.event,
              deliveryId: payload.delivery_id,
            },
            body,
          );
    if (problem === undefined) {
      metrics.callback('delivered');
      ctx.log.info({ instance_id: row.id, event: payload.event }, 'tenant event delivered');
      return;
    }
    // A plain failure: the job's backoff retries it (the job catalog's attempts bound it).
    metrics.callback('retry');
    throw new Error(problem);
  };
}

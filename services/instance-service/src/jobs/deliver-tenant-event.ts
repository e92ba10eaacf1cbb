// deliver-tenant-event {instance_id, event, occurred_at, delivery_id}: a change of the instance's
// database access (quota ladder, suspension) that database-service or database-worker reported,
// POSTed to the instance's callback_url signed like the final-state callback (postSigned), with
// X-Tenantdb-Delivery the transition's delivery_id (one per transition; a receiver drops repeats).
// Retried with the job's backoff (the job catalog's attempts); the allow-list and address checks
// are the same. An instance without a callback_url, or gone, gets nothing.
// database.moved (a move's cut-over, database-worker; one delivery id per move): the instance's
// db_host/db_port (and plan_tier, for a plan change) are read again from database-service and
// stored before anything is sent — the truth is database-service's answer now, not the notice, so
// notices of two moves arriving out of order still leave the newest address — and the callback
// carries the new address.
import type { JobPayload } from '@tenantdb/jobs';
import { resolveTarget } from '../callbacks/resolve-target';
import type { InstanceServiceDeps } from '../context';
import type { InstanceRow } from '../db';
import { postSigned } from './deliver-callback';
import type { JobContext } from './job-context';

export function deliverTenantEvent(deps: InstanceServiceDeps) {
  const { repo, callbackTargets, resolveHost, metrics, databaseService } = deps;

  /** The address database-service answers now, stored (audited when it changed). */
  async function refreshDatabase(row: InstanceRow, ctx: JobContext): Promise<InstanceRow> {
    if (row.status !== 'ready') return row;
    // Unreachable or a 5xx: thrown, and the job's backoff asks again.
    const now = await databaseService.getAllocation(row.id);
    if (now?.status !== 'ready' || !now.db_host || !now.db_port) return row;
    if (row.tenant_database_id && now.tenant_database_id !== row.tenant_database_id) return row;
    const unchanged =
      now.db_host === row.db_host &&
      now.db_port === row.db_port &&
      now.db_server_id === row.db_server_id &&
      (now.plan_tier ?? row.plan_tier) === row.plan_tier;
    if (unchanged) return row;
    const updated = await repo.updateDatabase(row.id, {
      tenant_database_id: now.tenant_database_id,
      db_server_id: now.db_server_id,
      db_host: now.db_host,
      db_port: now.db_port,
      plan_tier: now.plan_tier,
    });
    if (!updated) return row;
    await repo.audit({
      actor: 'instance-service',
      action: 'instance.database_moved',
      instance_id: row.id,
      customer_id: row.customer_id,
      details: {
        from: { db_server_id: row.db_server_id, plan_tier: row.plan_tier },
        to: { db_server_id: updated.db_server_id, plan_tier: updated.plan_tier },
      },
    });
    ctx.log.info({ instance_id: row.id, db_server_id: updated.db_server_id }, 'instance database moved');
    return updated;
  }

  return async (payload: JobPayload<'deliver-tenant-event'>, ctx: JobContext): Promise<void> => {
    const found = await repo.findById(payload.instance_id);
    if (!found) return;
    const moved = payload.event === 'database.moved';
    const row = moved ? await refreshDatabase(found, ctx) : found;
    if (!row.callback_url) return;
    const refused = callbackTargets.refuse(row.callback_url);
    if (refused) {
      metrics.callback('failed');
      ctx.log.warn({ instance_id: row.id, event: payload.event, reason: refused }, 'tenant event refused');
      return;
    }
    const body = JSON.stringify({
      event: payload.event,
      occurred_at: payload.occurred_at,
      instance: {
        id: row.id,
        customer_id: row.customer_id,
        plan_tier: row.plan_tier,
        db_name: row.db_name,
        ...(moved ? { db_host: row.db_host, db_port: row.db_port } : {}),
      },
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

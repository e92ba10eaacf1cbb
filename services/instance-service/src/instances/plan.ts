// A plan change of an instance for the portal: database-service changes the database's plan,
// at once within its placement (the instance's plan_tier now), or by moving it between shared and
// dedicated servers (the instance keeps its old plan_tier until the move's cut-over, when the
// database.moved event brings the new address and plan). Needs TENANTDB_DATABASE_SERVICE_ADMIN_TOKEN
// like suspension; audited here as well as in database-service.
import { DatabaseServiceError, type InstancePlanChange } from '@tenantdb/contracts';
import {
  ConflictError,
  HttpError,
  NotFoundError,
  type RequestContext,
  UnavailableError,
} from '@tenantdb/http';
import type { InstanceServiceDeps } from '../context';

export type InstancePlan = ReturnType<typeof createInstancePlan>;

export function createInstancePlan(deps: Pick<InstanceServiceDeps, 'config' | 'repo' | 'databaseService'>) {
  const { config, repo, databaseService } = deps;
  return async function changePlan(
    id: string,
    customerId: string,
    planTier: string,
    ctx: RequestContext,
  ): Promise<{ moving: boolean; answer: InstancePlanChange }> {
    const row = await repo.findForCustomer(id, customerId);
    if (!row) throw new NotFoundError('no such instance for this customer');
    if (row.status !== 'ready') throw new ConflictError(`the instance is ${row.status}`);
    if (!config.TENANTDB_DATABASE_SERVICE_ADMIN_TOKEN)
      throw new UnavailableError(
        'plan changes are not configured (TENANTDB_DATABASE_SERVICE_ADMIN_TOKEN)',
        60,
      );
    let result: Awaited<ReturnType<typeof databaseService.changePlan>>;
    try {
      result = await databaseService.changePlan(row.id, planTier);
    } catch (err) {
      if (err instanceof DatabaseServiceError && err.status < 500 && err.status !== 401 && err.status !== 403)
        throw new HttpError(
          // 404: the instance is ours but database-service holds no live database for it now.
          // (An unknown plan is its 400, passed on as it is.)
          err.status === 404 ? 409 : err.status,
          err.body?.message ?? 'database-service refused it',
          err.retryAfterSeconds !== undefined ? { 'retry-after': String(err.retryAfterSeconds) } : {},
        );
      throw new UnavailableError('database-service could not do it now; retry');
    }
    const moving = result.kind === 'moving';
    const now = moving ? row : ((await repo.setPlan(row.id, planTier)) ?? row);
    await repo.audit({
      actor: ctx.actor,
      action: 'instance.plan_change',
      request_id: ctx.requestId,
      instance_id: row.id,
      customer_id: row.customer_id,
      details: {
        from: row.plan_tier,
        to: planTier,
        ...(result.kind === 'moving' ? { move_id: result.change.move.id } : {}),
      },
    });
    return {
      moving,
      answer: {
        id: row.id,
        status: moving ? 'moving' : 'applied',
        plan_tier: now.plan_tier,
        requested_plan_tier: planTier,
        move_id: result.kind === 'moving' ? result.change.move.id : null,
      },
    };
  };
}

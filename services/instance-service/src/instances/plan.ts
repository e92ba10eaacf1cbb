// A plan change of an instance for the portal: database-service changes the database's plan,
// at once within its placement (the instance's plan_tier now), or by moving it between shared and
// dedicated servers (the instance keeps its old plan_tier until the move's cut-over, when the
// database.moved event brings the new address and plan). Through database-service's allocate-scope
// route, with the token instance-service allocates with; audited here as well as in database-service.
import type { InstancePlanChange } from '@tenantdb/contracts';
import type { RequestContext } from '@tenantdb/http';
import type { InstanceServiceDeps } from '../context';
import { askDatabaseService, readyInstance } from './access';

export type InstancePlan = ReturnType<typeof createInstancePlan>;

export function createInstancePlan(deps: Pick<InstanceServiceDeps, 'repo' | 'databaseService'>) {
  const { repo, databaseService } = deps;
  return async function changePlan(
    id: string,
    customerId: string,
    planTier: string,
    ctx: RequestContext,
  ): Promise<{ moving: boolean; answer: InstancePlanChange }> {
    const row = await readyInstance(repo, id, customerId);
    // An unknown plan is database-service's 400, passed on as it is.
    const result = await askDatabaseService(() => databaseService.changePlan(row.id, planTier));
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

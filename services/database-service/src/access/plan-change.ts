// A plan change whose placement differs from where the tenant lives (shared ⇄ dedicated) is a
// tenant move that carries the plan (tenant_moves.plan_tier; the cut-over writes it and its
// connection limit onto the tenant row in its transaction). To dedicated: the instance's dedicated
// server is made through allocate's own path (the customer's and the fleet's limits checked under
// their locks, 409/429 and nothing made otherwise) and the move waits in awaiting_target while it
// is provisioned. To shared: the move goes anywhere with room, and the worker retires the emptied
// dedicated server once the source is dropped. Every durable step is the move's record.
import type { DbServer, Plan, TenantDatabase } from '@tenantdb/catalog';
import type { PlanChangeStarted } from '@tenantdb/contracts';
import { ConflictError, type RequestContext, UnavailableError } from '@tenantdb/http';
import type { Queues } from '@tenantdb/jobs';
import type { DedicatedServerFor } from '../allocation/dedicated-placement';
import type { MovesService } from '../moves/moves.service';

export interface PlacementChangeDeps {
  dedicatedServerFor: DedicatedServerFor;
  moves: Pick<MovesService, 'startForPlan' | 'movable'>;
  queues: Pick<Queues, 'enqueue'>;
}

/** Whether the tenant must move for the plan: the plan's placement differs and its server does not fit. */
export function needsMove(
  current: Plan | undefined,
  plan: Plan,
  source: Pick<DbServer, 'server_type'>,
): boolean {
  const onDedicated = source.server_type === 'dedicated';
  const from = current?.placement ?? (onDedicated ? 'dedicated' : 'shared');
  // A require_dedicated tenant of a shared plan already fits a dedicated plan where it is.
  return from !== plan.placement && (plan.placement === 'dedicated') !== onDedicated;
}

export type PlacementChange = ReturnType<typeof createPlacementChange>;

export function createPlacementChange(deps: PlacementChangeDeps) {
  const { dedicatedServerFor, moves, queues } = deps;

  async function toDedicated(row: TenantDatabase, instanceId: string, plan: Plan, ctx: RequestContext) {
    if (!row.customer_id)
      throw new ConflictError('the allocation has no customer_id; a dedicated server cannot be made for it');
    const server = await dedicatedServerFor(
      { instance_id: instanceId, customer_id: row.customer_id },
      plan,
      ctx,
    );
    if (server.dedicated_to_customer_id !== row.customer_id)
      throw new ConflictError('the dedicated server of this instance belongs to another customer');
    switch (server.status) {
      case 'provisioning':
      case 'initializing':
        // The job id makes this a no-op while it is queued; the waiting move enqueues it too.
        await queues.enqueue('provision-server', { server_id: server.id });
        return moves.startForPlan(
          row,
          { plan_tier: plan.plan_tier, target_server_id: server.id, await_target: true },
          ctx,
        );
      case 'active':
        return moves.startForPlan(row, { plan_tier: plan.plan_tier, target_server_id: server.id }, ctx);
      case 'decommissioning':
        throw new ConflictError(
          "the instance's earlier dedicated server is still being retired; retry later",
        );
      default:
        throw new UnavailableError(
          `the instance's dedicated server is ${server.status}${server.status_reason ? `: ${server.status_reason}` : ''}; retry later`,
        );
    }
  }

  return async function changePlacement(
    instanceId: string,
    row: TenantDatabase,
    current: Plan | undefined,
    plan: Plan,
    ctx: RequestContext,
  ): Promise<PlanChangeStarted> {
    // Before anything is made: a tenant that cannot be moved gets no dedicated server either.
    await moves.movable(row);
    const move =
      plan.placement === 'dedicated'
        ? await toDedicated(row, instanceId, plan, ctx)
        : await moves.startForPlan(row, { plan_tier: plan.plan_tier }, ctx);
    return {
      instance_id: instanceId,
      from_plan_tier: current?.plan_tier ?? row.plan_tier,
      plan_tier: plan.plan_tier,
      move,
    };
  };
}

// Plans through the admin API: create, read, update, retire, each audited. A plan that live
// tenants use cannot be retired (409). Changes to a plan reach its tenants through `planChanged`
// (called after the commit), not inside the transaction.
import type { Plan, PlanFields, PlansRepo } from '@tenantdb/catalog';
import type { AdminPlan, CreatePlanRequest, UpdatePlanRequest } from '@tenantdb/contracts';
import { BadRequestError, ConflictError, NotFoundError, type RequestContext } from '@tenantdb/http';

export type PlansService = ReturnType<typeof createPlansService>;

export interface PlansDeps {
  plans: Pick<PlansRepo, 'find' | 'listAll' | 'create' | 'update' | 'retire'>;
  /** Called after a committed update: brings the plan's tenants in step. */
  planChanged?: (planTier: string) => Promise<void>;
}

export function planView(row: Plan): AdminPlan {
  return {
    plan_tier: row.plan_tier,
    placement: row.placement,
    connection_limit: row.connection_limit,
    cpu_limit: row.cpu_limit === null ? null : Number(row.cpu_limit),
    memory_limit_mb: row.memory_limit_mb,
    storage_size_gb: row.storage_size_gb,
    max_instances_per_customer: row.max_instances_per_customer,
    max_dedicated_servers_per_customer: row.max_dedicated_servers_per_customer,
    storage_quota_mb: row.storage_quota_mb,
    quota_warn_fraction: Number(row.quota_warn_fraction),
    quota_lift_fraction: Number(row.quota_lift_fraction),
    quota_grace_seconds: row.quota_grace_seconds,
    statement_timeout_ms: row.statement_timeout_ms,
    idle_in_transaction_timeout_ms: row.idle_in_transaction_timeout_ms,
    temp_file_limit_mb: row.temp_file_limit_mb,
    work_mem_mb: row.work_mem_mb,
    backup_interval_hours: row.backup_interval_hours,
    backup_retention_days: row.backup_retention_days,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    retired_at: row.retired_at?.toISOString() ?? null,
  };
}

/** The fields that changed between two rows of a plan, for the audit event. */
function changed(before: Plan, after: Plan): Record<string, { from: unknown; to: unknown }> {
  const a = planView(before) as Record<string, unknown>;
  const b = planView(after) as Record<string, unknown>;
  const out: Record<string, { from: unknown; to: unknown }> = {};
  for (const key of Object.keys(b)) {
    if (key !== 'updated_at' && a[key] !== b[key]) out[key] = { from: a[key], to: b[key] };
  }
  return out;
}

export function createPlansService(deps: PlansDeps) {
  const { plans } = deps;
  return {
    async list(includeRetired: boolean): Promise<AdminPlan[]> {
      return (await plans.listAll({ includeRetired })).map(planView);
    },

    async get(planTier: string): Promise<AdminPlan> {
      const row = await plans.find(planTier);
      if (!row) throw new NotFoundError(`no plan "${planTier}"`);
      return planView(row);
    },

    async create(req: CreatePlanRequest, ctx: RequestContext): Promise<AdminPlan> {
      const { plan_tier, ...fields } = req;
      const row = await plans.create({ plan_tier, ...(fields as PlanFields) }, (created) => ({
        actor: ctx.actor,
        action: 'plan.created',
        request_id: ctx.requestId,
        details: { plan: planView(created) },
      }));
      if (!row)
        throw new ConflictError(`a plan "${plan_tier}" exists already (retired plans keep their name)`);
      return planView(row);
    },

    async update(planTier: string, req: UpdatePlanRequest, ctx: RequestContext): Promise<AdminPlan> {
      const current = await plans.find(planTier);
      if (!current || current.retired_at) throw new NotFoundError(`no live plan "${planTier}"`);
      // The request alone is checked by its schema; against the stored fractions here (the
      // catalog's CHECK would refuse it too, but as a database error).
      const warn = req.quota_warn_fraction ?? Number(current.quota_warn_fraction);
      const lift = req.quota_lift_fraction ?? Number(current.quota_lift_fraction);
      if (lift > warn) throw new BadRequestError('quota_lift_fraction must not exceed quota_warn_fraction');
      const result = await plans.update(planTier, req as Partial<PlanFields>, (before, after) => ({
        actor: ctx.actor,
        action: 'plan.updated',
        request_id: ctx.requestId,
        details: { plan_tier: planTier, changed: changed(before, after) },
      }));
      if (!result) throw new NotFoundError(`no live plan "${planTier}"`);
      await deps.planChanged?.(planTier);
      return planView(result.after);
    },

    async retire(planTier: string, ctx: RequestContext): Promise<AdminPlan> {
      const result = await plans.retire(planTier, (row) => ({
        actor: ctx.actor,
        action: 'plan.retired',
        request_id: ctx.requestId,
        details: { plan_tier: row.plan_tier },
      }));
      if (result.kind === 'unknown') throw new NotFoundError(`no plan "${planTier}"`);
      if (result.kind === 'in-use') {
        throw new ConflictError(
          `plan "${planTier}" has ${result.liveTenants} live tenant(s); move them to another plan first`,
        );
      }
      return planView(result.plan);
    },
  };
}

// What an admin does to one allocation's access, and reads of usage: suspend and resume, change
// its plan within the same placement (connection limit, guardrails and quota at once; a
// restricted tenant that now fits is lifted at once), its usage, and a server's usage. Each
// change is written to the catalog first (access_pending), applied on the server, then marked
// applied; a crash in between is finished by the reconciler.
import {
  MB,
  type MovesRepo,
  nextQuotaState,
  type PlansRepo,
  QUOTA_STATES,
  type ServersRepo,
  type TenantDatabasesRepo,
  type TenantEventsRepo,
  type UsageRepo,
  type UsageStatsRepo,
} from '@tenantdb/catalog';
import type { AllocationUsage, PlanChangeStarted, ServerUsage } from '@tenantdb/contracts';
import {
  BadRequestError,
  ConflictError,
  NotFoundError,
  type RequestContext,
  UnavailableError,
} from '@tenantdb/http';
import type { Queues } from '@tenantdb/jobs';
import {
  applyQuotaTransition,
  guardrailsOf,
  PoolServerUnavailableError,
  quotaTransitions,
  syncAccess,
  type TenantAccess,
  type TenantEventNotice,
} from '@tenantdb/pool-server';
import { needsMove, type PlacementChange } from './plan-change';

export type AccessService = ReturnType<typeof createAccessService>;

export interface AccessDeps {
  servers: Pick<ServersRepo, 'findById'>;
  tenants: Pick<TenantDatabasesRepo, 'findLiveByInstance'>;
  usage: UsageRepo;
  events: Pick<TenantEventsRepo, 'markQueued'>;
  stats: Pick<UsageStatsRepo, 'serverTotal' | 'largestOnServer'>;
  plans: Pick<PlansRepo, 'find'>;
  access: TenantAccess;
  queues: Pick<Queues, 'enqueue'>;
  moves: Pick<MovesRepo, 'findActiveForTenant'>;
  changePlacement: PlacementChange;
}

const iso = (d: Date | null) => d?.toISOString() ?? null;

export function createAccessService(deps: AccessDeps) {
  const { servers, tenants, usage, events, stats, plans, access, queues, moves, changePlacement } = deps;
  const notify = async (notice: TenantEventNotice) => {
    await queues.enqueue('deliver-tenant-event', notice);
  };
  const transitions = (ctx: RequestContext, reason: string) =>
    quotaTransitions(
      { servers, usage, events, access, notify },
      { actor: ctx.actor, requestId: ctx.requestId, reason },
    );

  async function ready(instanceId: string) {
    const row = await tenants.findLiveByInstance(instanceId);
    if (!row) throw new NotFoundError('no live allocation for this instance_id');
    if (row.status !== 'ready') throw new ConflictError(`the allocation is ${row.status}`);
    return row;
  }

  /** Runs a server step; an unreachable server is 503 (the catalog already says what to do). */
  async function onServer<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (err instanceof PoolServerUnavailableError)
        throw new UnavailableError('the pool server is unreachable; the change is applied once it is back');
      throw err;
    }
  }

  async function usageOf(instanceId: string): Promise<AllocationUsage> {
    const row = await tenants.findLiveByInstance(instanceId);
    if (!row) throw new NotFoundError('no live allocation for this instance_id');
    const plan = row.plan_tier ? await plans.find(row.plan_tier) : undefined;
    return {
      instance_id: instanceId,
      tenant_database_id: row.id,
      plan_tier: row.plan_tier,
      size_bytes: row.size_bytes,
      active_connections: row.active_connections,
      sampled_at: iso(row.usage_sampled_at),
      storage_quota_bytes: plan?.storage_quota_mb ? plan.storage_quota_mb * MB : null,
      quota_state: row.quota_state,
      quota_state_at: iso(row.quota_state_at),
      suspended: row.suspended_at !== null,
      suspended_at: iso(row.suspended_at),
      access_pending: row.access_pending,
    };
  }

  async function setSuspended(instanceId: string, suspended: boolean, ctx: RequestContext) {
    const row = await ready(instanceId);
    const verb = suspended ? 'suspended' : 'resumed';
    const result = await usage.setSuspended(
      row.id,
      suspended,
      (r) => ({
        actor: ctx.actor,
        action: `allocation.${verb}`,
        request_id: ctx.requestId,
        instance_id: r.instance_id,
        db_server_id: r.db_server_id,
        tenant_database_id: r.id,
        details: {},
      }),
      (r) => ({
        instance_id: instanceId,
        event: `database.${verb}`,
        occurred_at: r.changed_at.toISOString(),
        delivery_id: `${r.id}-${verb}-${r.changed_at.getTime()}`,
      }),
    );
    if (!result) throw new ConflictError('the allocation changed; retry');
    // In the outbox with the change: a queue that cannot take it now gets it from the reconciler.
    if (result.event)
      await transitions(ctx, verb)
        .notify(result.event as TenantEventNotice)
        .catch(() => {});
    // Applied even when the catalog already said so: a repeat finishes a change a crash left.
    await onServer(() => syncAccess(transitions(ctx, suspended ? 'suspend' : 'resume'), result.row));
    return usageOf(instanceId);
  }

  return {
    usage: usageOf,
    suspend: (instanceId: string, ctx: RequestContext) => setSuspended(instanceId, true, ctx),
    resume: (instanceId: string, ctx: RequestContext) => setSuspended(instanceId, false, ctx),

    /**
     * A plan change within the same placement: the new connection limit and guardrails on the
     * server, then the row's plan in the catalog (audited), then the ladder judged again against
     * the new quota with the latest sample (a restricted tenant that fits is lifted now; a plan
     * change never restricts, the next sample judges that). A change of placement needs a move
     * of the tenant (plan-change.ts): 202 with the move that carries it. Refused (409) while a
     * move or another plan change of the allocation is under way.
     */
    async changePlan(
      instanceId: string,
      planTier: string,
      ctx: RequestContext,
    ): Promise<{ kind: 'applied'; usage: AllocationUsage } | { kind: 'moving'; change: PlanChangeStarted }> {
      const row = await ready(instanceId);
      const [plan, current, active] = await Promise.all([
        plans.find(planTier),
        row.plan_tier ? plans.find(row.plan_tier) : undefined,
        moves.findActiveForTenant(row.id),
      ]);
      // As allocate answers it: the request names no plan there is (400), not a missing resource.
      if (!plan) throw new BadRequestError(`unknown plan_tier "${planTier}"`);
      if (plan.retired_at) throw new ConflictError(`plan "${planTier}" is retired`);
      if (active)
        throw new ConflictError(
          active.plan_tier
            ? `a change to plan "${active.plan_tier}" is already under way (move ${active.id})`
            : `the allocation is being moved (move ${active.id}); change its plan once it is done`,
        );
      const server = await servers.findById(row.db_server_id);
      if (server && needsMove(current, plan, server)) {
        if (row.suspended_at) throw new ConflictError('the allocation is suspended; resume it first');
        return { kind: 'moving', change: await changePlacement(instanceId, row, current, plan, ctx) };
      }
      if (!server?.host) throw new UnavailableError('the server of this allocation is not reachable');
      await onServer(() =>
        access.applyPlan(
          server,
          { dbName: row.db_name, dbUser: row.db_user },
          { connectionLimit: plan.connection_limit, guardrails: guardrailsOf(plan) },
        ),
      );
      const changed = await usage.changePlan(row.id, plan, {
        actor: ctx.actor,
        action: 'allocation.plan_changed',
        request_id: ctx.requestId,
        instance_id: instanceId,
        db_server_id: row.db_server_id,
        tenant_database_id: row.id,
        details: { from: row.plan_tier, to: plan.plan_tier, connection_limit: plan.connection_limit },
      });
      if (!changed) throw new ConflictError('the allocation changed; retry');
      const judged = await usage.findLadderRow(row.id);
      if (judged) {
        const next = nextQuotaState({
          state: judged.quota_state,
          sizeBytes: judged.size_bytes ?? 0,
          overQuotaSince: judged.over_quota_since,
          quotaMb: judged.storage_quota_mb,
          warnFraction: Number(judged.quota_warn_fraction),
          liftFraction: Number(judged.quota_lift_fraction),
          graceSeconds: judged.quota_grace_seconds,
          now: new Date(),
        });
        if (QUOTA_STATES.indexOf(next) < QUOTA_STATES.indexOf(judged.quota_state)) {
          await onServer(() => applyQuotaTransition(transitions(ctx, 'plan change'), judged, next));
        }
      }
      return { kind: 'applied', usage: await usageOf(instanceId) };
    },

    async serverUsage(serverId: string, limit: number): Promise<ServerUsage> {
      const server = await servers.findById(serverId);
      if (!server) throw new NotFoundError('no server with this id');
      const [total, largest] = await Promise.all([
        stats.serverTotal(serverId),
        stats.largestOnServer(serverId, limit),
      ]);
      const storage = server.storage_size_gb ? server.storage_size_gb * 1024 * MB : null;
      return {
        db_server_id: serverId,
        total_bytes: total.total_bytes,
        storage_bytes: storage,
        used_fraction: storage ? total.total_bytes / storage : null,
        tenants: total.tenants,
        sampled_tenants: total.sampled,
        oldest_sample: iso(total.oldest_sample),
        largest: largest.map((r) => ({
          instance_id: r.instance_id,
          tenant_database_id: r.id,
          db_name: r.db_name,
          plan_tier: r.plan_tier,
          size_bytes: r.size_bytes,
          active_connections: r.active_connections,
          sampled_at: iso(r.usage_sampled_at),
          quota_state: r.quota_state,
          suspended: r.suspended_at !== null,
        })),
      };
    },
  };
}

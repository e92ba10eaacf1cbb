// Allocation: hand out a tenant database for an instance, exactly once, without over-committing
// any server. The slot is reserved in one catalog statement; the SQL on the pool server runs
// after it committed; a failure there is compensated (slot freed, row failed, leftovers dropped).
// This file composes the parts: shared placement, dedicated placement, release and rotation.
import type {
  AuditRepo,
  CatalogDb,
  PlacementStrategy,
  Plan,
  PlansRepo,
  ReservationsRepo,
  ServersRepo,
  TenantDatabasesRepo,
} from '@tenantdb/catalog';
import type { Allocated, AllocateRequest, Allocation, Provisioned, Provisioning } from '@tenantdb/contracts';
import { BadRequestError, NotFoundError, type RequestContext } from '@tenantdb/http';
import type { Queues } from '@tenantdb/jobs';
import type { Logger } from '@tenantdb/observability';
import type { TenantOps } from '@tenantdb/pool-server';
import type { SecretBox } from '@tenantdb/secrets';
import type { ServiceMetrics } from '../metrics';
import { createAnswers } from './answers';
import { createDedicatedPlacement } from './dedicated-placement';
import { createMaterialize } from './materialize';
import { createReleaseRotate } from './release-rotate';
import { createSharedPlacement } from './shared-placement';

export interface AllocationConfig {
  strategy: PlacementStrategy;
  retryAfterSeconds: number;
  defaultDriver: 'local' | 'swarm' | 'kubernetes';
}

export interface AllocationDeps {
  db: CatalogDb;
  servers: ServersRepo;
  reservations: ReservationsRepo;
  tenants: TenantDatabasesRepo;
  plans: PlansRepo;
  audit: AuditRepo;
  secrets: SecretBox;
  tenantOps: TenantOps;
  queues: Queues;
  metrics: ServiceMetrics;
  logger: Logger;
  config: AllocationConfig;
}

function knownPlan(planTier: string, plan: Plan | undefined): Plan {
  if (!plan) throw new BadRequestError(`unknown plan_tier "${planTier}"`);
  return plan;
}

export function createAllocationService(deps: AllocationDeps) {
  const { servers, tenants, plans, metrics } = deps;
  const answers = createAnswers(deps);
  const materialize = createMaterialize(deps);
  const allocateShared = createSharedPlacement({ ...deps, answers, materialize });
  const allocateDedicated = createDedicatedPlacement({ ...deps, answers, materialize });
  const { release, rotate } = createReleaseRotate({ ...deps, answers });
  // Concurrent repeats of one instance inside this process share one attempt; across processes
  // the unique index on live rows decides and the loser waits for the winner.
  const inFlight = new Map<string, Promise<Allocated | Provisioning>>();

  async function allocateOnce(req: AllocateRequest, ctx: RequestContext): Promise<Allocated | Provisioning> {
    // Both reads at once: one round trip's wait instead of two. An existing allocation is answered
    // before the plan is judged, as a repeat must get the same answer.
    const [existing, found] = await Promise.all([
      tenants.findLiveByInstance(req.instance_id),
      plans.find(req.plan_tier),
    ]);
    if (existing) {
      const answer = await answers.answerExisting(existing, req);
      if (answer) return answer;
    }
    const plan = knownPlan(req.plan_tier, found);
    if (req.require_dedicated || plan.placement === 'dedicated') {
      const result = await allocateDedicated(req, plan, ctx);
      return 'answer' in result ? { status: 'allocated', ...result.answer } : result;
    }
    return allocateShared(req, plan, ctx);
  }

  return {
    async allocate(req: AllocateRequest, ctx: RequestContext): Promise<Allocated | Provisioning> {
      const started = performance.now();
      const existing = inFlight.get(req.instance_id);
      if (existing) {
        const answer = await existing;
        metrics.observeAllocation('repeat', started);
        return answer;
      }
      const attempt = allocateOnce(req, ctx);
      inFlight.set(req.instance_id, attempt);
      try {
        const answer = await attempt;
        metrics.observeAllocation(answer.status === 'allocated' ? 'allocated' : 'provisioning', started);
        return answer;
      } catch (err) {
        metrics.observeAllocation('failed', started);
        throw err;
      } finally {
        inFlight.delete(req.instance_id);
      }
    },

    async provisionDedicated(
      req: { instance_id: string; customer_id: string; plan_tier: string },
      ctx: RequestContext,
    ): Promise<Provisioned | Provisioning> {
      const plan = knownPlan(req.plan_tier, await plans.find(req.plan_tier));
      if (plan.placement !== 'dedicated') {
        throw new BadRequestError(
          `plan "${plan.plan_tier}" is placed on shared pools and has no dedicated server`,
        );
      }
      const result = await allocateDedicated(req, plan, ctx);
      return 'answer' in result ? { status: 'provisioned', ...result.answer } : result;
    },

    async get(instanceId: string): Promise<Allocation> {
      const row = await tenants.findLatestByInstance(instanceId);
      if (!row) throw new NotFoundError('no allocation for this instance_id');
      const server = await servers.findById(row.db_server_id);
      return {
        instance_id: instanceId,
        customer_id: row.customer_id,
        tenant_database_id: row.id,
        db_server_id: row.db_server_id,
        db_host: server?.host ?? null,
        db_port: server?.port ?? null,
        db_name: row.db_name,
        db_user: row.db_user,
        plan_tier: row.plan_tier,
        status: row.status as Allocation['status'],
        connection_limit: row.connection_limit,
        created_at: row.created_at.toISOString(),
        ready_at: row.ready_at?.toISOString() ?? null,
        released_at: row.released_at?.toISOString() ?? null,
      };
    },

    release,
    rotate,
  };
}

export type AllocationService = ReturnType<typeof createAllocationService>;

// Allocation: hand out a tenant database for an instance, exactly once, without over-committing
// any server. The slot is reserved in one catalog statement; the SQL on the pool server runs
// after it committed; a failure there is compensated (slot freed, row failed, leftovers dropped).
// This file composes the parts: shared placement, dedicated placement, release and rotation, reads.
import type {
  AuditRepo,
  CatalogDb,
  MovesRepo,
  PlacementStrategy,
  Plan,
  PlansRepo,
  ReservationsRepo,
  RestoresRepo,
  ServersRepo,
  TenantDatabasesRepo,
  TlsRepo,
} from '@tenantdb/catalog';
import type { Allocated, AllocateRequest, Provisioned, Provisioning } from '@tenantdb/contracts';
import { BadRequestError, type RequestContext } from '@tenantdb/http';
import type { Queues } from '@tenantdb/jobs';
import type { Logger } from '@tenantdb/observability';
import type { TenantOps } from '@tenantdb/pool-server';
import type { SecretBox } from '@tenantdb/secrets';
import type { Limits } from '../limits';
import type { ServiceMetrics } from '../metrics';
import { createAnswers } from './answers';
import { createDedicatedPlacement } from './dedicated-placement';
import { createMaterialize } from './materialize';
import { createReads } from './reads';
import { createReleaseRotate } from './release-rotate';
import { createSharedPlacement } from './shared-placement';

export interface AllocationConfig {
  strategy: PlacementStrategy;
  retryAfterSeconds: number;
  defaultDriver: 'local' | 'swarm' | 'kubernetes';
  /** How long a release waits for a rotation of the same allocation before answering 503. */
  releaseLockTimeoutMs: number;
  /** How often an attempt creating a tenant database touches its row (reconcile's liveness signal). */
  heartbeatMs: number;
}

export interface AllocationDeps {
  db: CatalogDb;
  servers: ServersRepo;
  reservations: ReservationsRepo;
  tenants: TenantDatabasesRepo;
  moves: MovesRepo;
  restores: RestoresRepo;
  plans: PlansRepo;
  audit: AuditRepo;
  tls: TlsRepo;
  secrets: SecretBox;
  tenantOps: TenantOps;
  queues: Queues;
  metrics: ServiceMetrics;
  logger: Logger;
  config: AllocationConfig;
  limits: Limits;
}

function knownPlan(planTier: string, plan: Plan | undefined): Plan {
  if (!plan) throw new BadRequestError(`unknown plan_tier "${planTier}"`);
  if (plan.retired_at) throw new BadRequestError(`plan_tier "${planTier}" is retired`);
  return plan;
}

/**
 * What makes two allocate requests identical, so that they may share one attempt: every field of
 * the request (a field added to the contract later included), keys in a fixed order, and an absent
 * require_dedicated read as false, as the service reads it.
 */
export function inFlightKey(req: AllocateRequest): string {
  const canonical = (value: unknown): unknown =>
    value && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(
          Object.entries(value)
            .filter(([, v]) => v !== undefined)
            .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
            .map(([k, v]) => [k, canonical(v)]),
        )
      : value;
  return JSON.stringify(canonical({ ...req, require_dedicated: req.require_dedicated === true }));
}

export function createAllocationService(deps: AllocationDeps) {
  const { tenants, plans, metrics } = deps;
  const answers = createAnswers(deps);
  const materialize = createMaterialize(deps);
  const allocateShared = createSharedPlacement({ ...deps, answers, materialize });
  const allocateDedicated = createDedicatedPlacement({ ...deps, answers, materialize });
  const { release, rotate } = createReleaseRotate({ ...deps, answers });
  const reads = createReads({ ...deps, answers });
  // Concurrent repeats of one request inside this process share one attempt; across processes
  // the unique index on live rows decides and the loser waits for the winner. Keyed by every
  // field that changes the answer, not the instance alone: a request for the same instance by
  // another customer (or with another plan) runs on its own and meets the owner check (409).
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
      return 'answer' in result ? { ...result.answer, status: 'allocated' } : result;
    }
    return allocateShared(req, plan, ctx);
  }

  return {
    async allocate(req: AllocateRequest, ctx: RequestContext): Promise<Allocated | Provisioning> {
      const started = performance.now();
      const key = inFlightKey(req);
      const existing = inFlight.get(key);
      if (existing) {
        const answer = await existing;
        metrics.observeAllocation('repeat', started);
        return answer;
      }
      const attempt = allocateOnce(req, ctx);
      inFlight.set(key, attempt);
      try {
        const answer = await attempt;
        metrics.observeAllocation(answer.status === 'allocated' ? 'allocated' : 'provisioning', started);
        return answer;
      } catch (err) {
        metrics.observeAllocation('failed', started);
        throw err;
      } finally {
        inFlight.delete(key);
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
      return 'answer' in result ? { ...result.answer, status: 'provisioned' } : result;
    },

    get: reads.get,
    /** The credentials of a ready allocation, read again (audited): what allocate answered. */
    readCredentials: reads.credentials,
    release,
    rotate,
  };
}

export type AllocationService = ReturnType<typeof createAllocationService>;

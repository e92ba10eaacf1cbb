// Dedicated placement: one server per instance, created once; 202 until the worker has made it
// active, then the tenant database is created there.
import { randomBytes, randomUUID } from 'node:crypto';
import type {
  AuditRepo,
  CatalogDb,
  DbServer,
  Plan,
  ServersRepo,
  TenantDatabase,
  TenantDatabasesRepo,
} from '@tenantdb/catalog';
import type { AllocateRequest, Provisioning } from '@tenantdb/contracts';
import { ConflictError, type RequestContext, UnavailableError } from '@tenantdb/http';
import type { Queues } from '@tenantdb/jobs';
import { generateTenantNames, PoolServerUnavailableError } from '@tenantdb/pool-server';
import { generatePassword, type SecretBox } from '@tenantdb/secrets';
import type { Limits } from '../limits';
import type { AllocationConfig } from './allocation.service';
import type { Answers, Credentials } from './answers';
import type { Materialize } from './materialize';

export interface DedicatedPlacementDeps {
  db: CatalogDb;
  servers: Pick<ServersRepo, 'findDedicatedFor' | 'insert' | 'reserveSlotOn'>;
  tenants: Pick<TenantDatabasesRepo, 'findLiveByInstance' | 'insert'>;
  audit: Pick<AuditRepo, 'record' | 'audited'>;
  secrets: Pick<SecretBox, 'encrypt'>;
  queues: Pick<Queues, 'enqueue'>;
  config: Pick<AllocationConfig, 'retryAfterSeconds' | 'defaultDriver'>;
  limits: Pick<Limits, 'admitInstance' | 'admitServer'>;
  answers: Answers;
  materialize: Materialize;
}

/** Rolls the slot's transaction back: the instance already had a live row, so no slot is taken. */
class AlreadyLive extends Error {}

export type DedicatedResult = { server: DbServer; answer: Credentials } | Provisioning;

export type DedicatedServerFor = ReturnType<typeof createDedicatedServerFor>;

/** Makes (or finds) an instance's dedicated server: allocate's path and a plan change's. */
export function createDedicatedServerFor(
  deps: Pick<DedicatedPlacementDeps, 'servers' | 'audit' | 'limits'> & {
    config: Pick<AllocationConfig, 'defaultDriver'>;
  },
) {
  const { servers, audit, config, limits } = deps;
  /**
   * The instance's dedicated server, inserted (and audited) by the first request that asks, when
   * the customer's limits and the fleet's allow one more (checked under their locks in the
   * inserting transaction: 409 or 429, and nothing inserted, otherwise).
   */
  return async function dedicatedServer(
    req: Pick<AllocateRequest, 'instance_id' | 'customer_id'>,
    plan: Plan,
    ctx: RequestContext,
  ): Promise<DbServer> {
    const existing = await servers.findDedicatedFor(req.instance_id);
    if (existing) return existing;
    const base = `ded-${req.instance_id.replaceAll('-', '').slice(0, 20)}`;
    const row = {
      driver: config.defaultDriver,
      server_type: 'dedicated' as const,
      dedicated_to_customer_id: req.customer_id,
      dedicated_to_instance_id: req.instance_id,
      max_instances: 1,
      status: 'provisioning' as const,
      cpu_limit: plan.cpu_limit === null ? null : Number(plan.cpu_limit),
      memory_limit_mb: plan.memory_limit_mb,
      storage_size_gb: plan.storage_size_gb,
    };
    const created = await audit.audited(
      async (trx) => {
        await limits.admitInstance(trx, req, plan, { dedicated: true });
        // Under the customer's lock: a request of the same customer made it meanwhile.
        if (await servers.findDedicatedFor(req.instance_id, trx)) return undefined;
        await limits.admitServer(trx);
        // The name of an earlier server of the instance (failed and cleaned up, or retired) stays
        // taken by its decommissioned row: a retry's server gets a suffix.
        return (
          (await servers.insert({ ...row, name: base }, trx)) ??
          (await servers.insert({ ...row, name: `${base}-${randomBytes(4).toString('hex')}` }, trx))
        );
      },
      (inserted) => ({
        actor: ctx.actor,
        action: 'server.provision_dedicated',
        request_id: ctx.requestId,
        instance_id: req.instance_id,
        db_server_id: inserted.id,
        details: { plan_tier: plan.plan_tier },
      }),
    );
    const server = created ?? (await servers.findDedicatedFor(req.instance_id));
    if (!server) throw new ConflictError('a server with this name already exists');
    return server;
  };
}

export function createDedicatedPlacement(deps: DedicatedPlacementDeps) {
  const { db, servers, tenants, audit, secrets, queues, config, answers, materialize } = deps;
  const dedicatedServer = createDedicatedServerFor(deps);

  /**
   * An instance that already has a live allocation gets no dedicated server of its own: not for
   * another customer (its owner), nor beside a database it already has on a shared pool.
   */
  async function refuseIfHeldElsewhere(req: AllocateRequest): Promise<void> {
    const live = await tenants.findLiveByInstance(req.instance_id);
    if (!live) return;
    if (live.customer_id !== req.customer_id) {
      throw new ConflictError('this instance_id is already allocated to another customer');
    }
    const own = await servers.findDedicatedFor(req.instance_id);
    if (own?.id !== live.db_server_id) {
      throw new ConflictError('this instance_id already has a database on a shared pool');
    }
  }

  /** A slot on the server and the row holding it, in one transaction; undefined when none was taken. */
  async function reserveOn(
    server: DbServer,
    req: AllocateRequest,
    plan: Plan,
    ctx: RequestContext,
    password: string,
  ): Promise<TenantDatabase | undefined> {
    const names = generateTenantNames();
    const id = randomUUID(); // chosen here: the password is encrypted for its row
    return db
      .transaction()
      .execute(async (trx) => {
        const reserved = await servers.reserveSlotOn(server.id, trx);
        if (!reserved) return undefined;
        const inserted = await tenants.insert(
          {
            id,
            instance_id: req.instance_id,
            customer_id: req.customer_id,
            db_server_id: server.id,
            db_name: names.dbName,
            db_user: names.dbUser,
            password_enc: secrets.encrypt(password, id),
            plan_tier: plan.plan_tier,
            status: 'creating',
            connection_limit: plan.connection_limit,
          },
          trx,
        );
        if (inserted.kind === 'duplicate') throw new AlreadyLive();
        await audit.record(
          {
            actor: ctx.actor,
            action: 'allocation.reserve',
            request_id: ctx.requestId,
            instance_id: req.instance_id,
            db_server_id: server.id,
            tenant_database_id: inserted.row.id,
            details: { plan_tier: plan.plan_tier, dedicated: true },
          },
          trx,
        );
        return inserted.row;
      })
      .catch((err) => {
        if (err instanceof AlreadyLive) return undefined;
        throw err;
      });
  }

  return async function allocateDedicated(
    req: AllocateRequest,
    plan: Plan,
    ctx: RequestContext,
  ): Promise<DedicatedResult> {
    await refuseIfHeldElsewhere(req);
    const server = await dedicatedServer(req, plan, ctx);
    if (server.dedicated_to_customer_id !== req.customer_id) {
      throw new ConflictError('this instance_id belongs to another customer');
    }
    switch (server.status) {
      case 'provisioning':
      case 'initializing':
        // Enqueued on every poll: the job id makes it a no-op while queued, and a lost enqueue
        // (Redis was down on the first call) is made good on the next one.
        await queues.enqueue('provision-server', { server_id: server.id });
        return answers.provisioning('the dedicated server is being provisioned', server.id);
      case 'active':
      case 'full':
        break;
      default:
        throw new UnavailableError(
          `the dedicated server is ${server.status}${server.status_reason ? `: ${server.status_reason}` : ''}`,
          config.retryAfterSeconds,
        );
    }

    const live = await tenants.findLiveByInstance(req.instance_id);
    if (live) {
      const answer = await answers.answerExisting(live, req);
      if (answer?.status === 'allocated') return { server, answer };
      if (answer) return answer;
    }
    const password = generatePassword();
    const row = await reserveOn(server, req, plan, ctx, password);
    if (!row) {
      const again = await tenants.findLiveByInstance(req.instance_id);
      const answer = again && (await answers.answerExisting(again, req));
      if (answer?.status === 'allocated') return { server, answer };
      if (answer) return answer;
      throw new UnavailableError('the dedicated server has no free slot', config.retryAfterSeconds);
    }
    await materialize(server, row, password).catch((err) => {
      if (err instanceof PoolServerUnavailableError) {
        throw new UnavailableError(
          'the dedicated server is unreachable; retry later',
          config.retryAfterSeconds,
        );
      }
      throw err;
    });
    return { server, answer: await answers.credentials(server, row) };
  };
}

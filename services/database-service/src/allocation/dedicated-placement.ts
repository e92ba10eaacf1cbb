// Dedicated placement: one server per instance, created once; 202 until the worker has made it
// active, then the tenant database is created there.
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
  answers: Answers;
  materialize: Materialize;
}

/** Rolls the slot's transaction back: the instance already had a live row, so no slot is taken. */
class AlreadyLive extends Error {}

export type DedicatedResult = { server: DbServer; answer: Credentials } | Provisioning;

export function createDedicatedPlacement(deps: DedicatedPlacementDeps) {
  const { db, servers, tenants, audit, secrets, queues, config, answers, materialize } = deps;

  /** The instance's dedicated server, inserted (and audited) by the first request that asks. */
  async function dedicatedServer(req: AllocateRequest, plan: Plan, ctx: RequestContext): Promise<DbServer> {
    const existing = await servers.findDedicatedFor(req.instance_id);
    if (existing) return existing;
    const suffix = req.instance_id.replaceAll('-', '').slice(0, 20);
    const created = await audit.audited(
      (trx) =>
        servers.insert(
          {
            name: `ded-${suffix}`,
            driver: config.defaultDriver,
            server_type: 'dedicated',
            dedicated_to_customer_id: req.customer_id,
            dedicated_to_instance_id: req.instance_id,
            max_instances: 1,
            status: 'provisioning',
            cpu_limit: plan.cpu_limit === null ? null : Number(plan.cpu_limit),
            memory_limit_mb: plan.memory_limit_mb,
            storage_size_gb: plan.storage_size_gb,
          },
          trx,
        ),
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
    return db
      .transaction()
      .execute(async (trx) => {
        const reserved = await servers.reserveSlotOn(server.id, trx);
        if (!reserved) return undefined;
        const inserted = await tenants.insert(
          {
            instance_id: req.instance_id,
            customer_id: req.customer_id,
            db_server_id: server.id,
            db_name: names.dbName,
            db_user: names.dbUser,
            password_enc: secrets.encrypt(password),
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

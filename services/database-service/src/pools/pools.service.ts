// Admin operations on the fleet: list and inspect servers, provision new pools (through the
// worker), register existing Postgres servers, run a real health check, fleet statistics, and
// take servers out of placement (cordon, drain) and out of the fleet (decommission; those status
// changes are in status-changes.ts).
import { randomBytes, randomUUID } from 'node:crypto';
import type {
  AuditRepo,
  CatalogDb,
  DbServer,
  DrainsRepo,
  HealthRepo,
  ServersRepo,
  TenantDatabasesRepo,
} from '@tenantdb/catalog';
import type {
  CreatePoolRequest,
  HealthCheckResult,
  Pool,
  PoolDetail,
  RegisterPoolRequest,
  Stats,
} from '@tenantdb/contracts';
import { ConflictError, NotFoundError, type RequestContext, UnprocessableError } from '@tenantdb/http';
import type { Queues } from '@tenantdb/jobs';
import { checkServerHealth, hardenPool, inspectServer, type PoolConnections } from '@tenantdb/pool-server';
import type { SecretBox } from '@tenantdb/secrets';
import type { Limits } from '../limits';
import { singleFlight } from '../single-flight';
import { toDrainProgress, toPool } from './pool-view';
import { createStatusChanges } from './status-changes';

export interface PoolsDeps {
  db: CatalogDb;
  servers: ServersRepo;
  health: HealthRepo;
  tenants: TenantDatabasesRepo;
  drains: DrainsRepo;
  audit: AuditRepo;
  secrets: SecretBox;
  connections: PoolConnections;
  queues: Queues;
  limits: Pick<Limits, 'admitServer'>;
  config: { defaultDriver: 'local' | 'swarm' | 'kubernetes' };
}

const MIN_POSTGRES = 130_000; // DROP DATABASE … WITH (FORCE)

export function createPoolsService(deps: PoolsDeps) {
  const { db, servers, health, tenants, drains, audit, secrets, connections, queues, limits, config } = deps;
  const statusChanges = createStatusChanges(deps);

  async function mustFind(id: string): Promise<DbServer> {
    const server = await servers.findById(id);
    if (!server) throw new NotFoundError('no server with this id');
    return server;
  }

  return {
    ...statusChanges,

    async list(filter: Parameters<ServersRepo['list']>[0]) {
      const { rows, total } = await servers.list(filter);
      return { pools: rows.map(toPool), total_count: total };
    },

    async detail(id: string): Promise<PoolDetail> {
      const server = await mustFind(id);
      return {
        ...toPool(server),
        orchestrator_ref: server.orchestrator_ref,
        image: server.image,
        placement: server.placement,
        dedicated_to_customer_id: server.dedicated_to_customer_id,
        dedicated_to_instance_id: server.dedicated_to_instance_id,
        cpu_limit: server.cpu_limit === null ? null : Number(server.cpu_limit),
        memory_limit_mb: server.memory_limit_mb,
        storage_size_gb: server.storage_size_gb,
        admin_user: server.admin_user,
        last_allocated_at: server.last_allocated_at?.toISOString() ?? null,
        tenant_databases: await tenants.countByStatus(id),
        drain:
          server.status === 'draining' || server.status === 'drained'
            ? toDrainProgress(server, await drains.figures(server))
            : null,
      };
    },

    /**
     * Inserts the server as provisioning and hands it to the worker; undone if Redis refuses.
     * Refused (429, nothing inserted) at the fleet ceiling or the provisioning bound.
     */
    async create(req: CreatePoolRequest, ctx: RequestContext): Promise<Pool> {
      const name = req.name ?? `pool-${randomBytes(5).toString('hex')}`;
      const server = await db.transaction().execute(async (trx) => {
        await limits.admitServer(trx);
        return servers.insert(
          {
            name,
            driver: req.driver ?? config.defaultDriver,
            server_type: req.server_type,
            allocation_strategy: req.allocation_strategy,
            priority: req.priority,
            placement: req.placement,
            max_instances: req.max_instances,
            cpu_limit: req.cpu_limit ?? null,
            memory_limit_mb: req.memory_limit_mb ?? null,
            storage_size_gb: req.storage_size_gb ?? null,
            postgres_major: req.postgres_major ?? null,
            status: 'provisioning',
          },
          trx,
        );
      });
      if (!server) throw new ConflictError(`a server named "${name}" already exists`);
      try {
        await queues.enqueue('provision-server', { server_id: server.id });
      } catch (err) {
        await servers.remove(server.id);
        throw err;
      }
      await audit.record({
        actor: ctx.actor,
        action: 'server.create',
        request_id: ctx.requestId,
        db_server_id: server.id,
        details: { name, max_instances: req.max_instances, driver: server.driver },
      });
      return toPool(server);
    },

    /** Joins an existing Postgres server to the fleet after a real login proves it usable. */
    async register(req: RegisterPoolRequest, ctx: RequestContext): Promise<Pool> {
      if (await servers.findByName(req.name))
        throw new ConflictError(`a server named "${req.name}" already exists`);
      const same = await servers.findByAddress(req.host, req.port);
      if (same) throw new ConflictError(`${req.host}:${req.port} is already registered as "${same.name}"`);

      // The row's id is chosen here: the admin password is encrypted for it before the insert.
      const id = randomUUID();
      const target = {
        id,
        host: req.host,
        port: req.port,
        admin_user: req.admin_user,
        admin_password_enc: secrets.encrypt(req.admin_password, id),
        admin_database: req.admin_database,
      };
      let facts: Awaited<ReturnType<typeof inspectServer>>;
      try {
        facts = await inspectServer(connections, target);
      } catch (err) {
        throw new UnprocessableError(
          `cannot log in to ${req.host}:${req.port} as ${req.admin_user}: ${(err as Error).message.replace(/^pool server \S+ unavailable: /, '')}`,
        );
      }
      if (facts.versionNum < MIN_POSTGRES) throw new UnprocessableError('PostgreSQL 13 or newer is required');
      if (!facts.canManageTenants) {
        throw new UnprocessableError('admin_user must be a superuser or have both CREATEDB and CREATEROLE');
      }
      await hardenPool(connections, target);

      const server = await db.transaction().execute(async (trx) => {
        const inserted = await servers.insert(
          {
            id,
            name: req.name,
            driver: 'external',
            host: req.host,
            port: req.port,
            server_type: req.server_type,
            allocation_strategy: req.allocation_strategy,
            priority: req.priority,
            placement: req.placement,
            max_instances: req.max_instances,
            postgres_version: facts.postgresVersion,
            postgres_major: facts.major,
            logical_replication: facts.logicalReplication,
            status: 'active',
            health_status: 'healthy',
            last_health_check: new Date(),
            admin_user: req.admin_user,
            admin_password_enc: target.admin_password_enc,
            admin_database: req.admin_database,
            provisioned_at: new Date(),
          },
          trx,
        );
        if (!inserted) throw new ConflictError(`a server named "${req.name}" already exists`);
        await audit.record(
          {
            actor: ctx.actor,
            action: 'server.register',
            request_id: ctx.requestId,
            db_server_id: inserted.id,
            details: {
              name: req.name,
              host: req.host,
              port: req.port,
              postgres_major: facts.major,
              logical_replication: facts.logicalReplication,
            },
          },
          trx,
        );
        return inserted;
      });
      return toPool(server);
    },

    /** A real check now: login, SELECT 1, tenant databases on the server vs the catalog. */
    async healthCheck(id: string, ctx: RequestContext): Promise<HealthCheckResult> {
      const server = await mustFind(id);
      if (!server.host || !server.port || !server.admin_password_enc) {
        throw new ConflictError(`the server is ${server.status} and has no address to check yet`);
      }
      // The same check, transition rule and conditional write as the worker's sweep: an
      // operator's cordon or drain that lands while the probe runs is not overwritten.
      const { probe, next, checkedAt, databasesInCatalog, drift, updated } = await checkServerHealth(
        health,
        connections,
        server,
      );
      await audit.record({
        actor: ctx.actor,
        action: 'server.health_check',
        request_id: ctx.requestId,
        db_server_id: id,
        details: { ok: probe.ok },
      });
      return {
        db_server_id: id,
        ok: probe.ok,
        checked_at: checkedAt.toISOString(),
        latency_ms: probe.latencyMs,
        error: probe.error,
        health_status: updated?.health_status ?? next.health_status,
        health_failures: updated?.health_failures ?? next.health_failures,
        status: updated?.status ?? (await mustFind(id)).status,
        postgres_version: probe.postgresVersion,
        databases_on_server: probe.tenantDatabases,
        databases_in_catalog: databasesInCatalog,
        drift,
      };
    },

    /**
     * Fleet totals, from one aggregate over db_servers (never the tenant rows). Requests that come
     * while that read runs share it: dashboards polling side by side cost one scan, not one each.
     */
    stats: singleFlight(async (): Promise<Stats> => {
      const rows = await servers.stats();
      const byStatus: Record<string, number> = {};
      const byType: Record<string, number> = {};
      let total = 0;
      let active = 0;
      let capacity = 0;
      let used = 0;
      for (const r of rows) {
        total += r.servers;
        if (r.status === 'active' || r.status === 'full') active += r.servers;
        // A drained server is out of the fleet's capacity until it is reopened or decommissioned.
        if (r.status !== 'drained') capacity += r.capacity;
        used += r.used;
        byStatus[r.status] = (byStatus[r.status] ?? 0) + r.servers;
        byType[r.server_type] = (byType[r.server_type] ?? 0) + r.servers;
      }
      return {
        total_pools: total,
        active_pools: active,
        total_capacity: capacity,
        total_used: used,
        overall_utilization: capacity === 0 ? 0 : Math.round((used / capacity) * 1000) / 10,
        by_status: byStatus,
        by_type: byType,
      };
    }),
  };
}

export type PoolsService = ReturnType<typeof createPoolsService>;

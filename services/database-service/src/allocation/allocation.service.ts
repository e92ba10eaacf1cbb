// Allocation: hand out a tenant database for an instance, exactly once, without over-committing
// any server. The slot is reserved in one catalog statement; the SQL on the pool server runs
// after it committed; a failure there is compensated (slot freed, row failed, leftovers dropped).
import type {
  AuditRepo,
  CatalogDb,
  DbServer,
  PlacementStrategy,
  Plan,
  PlansRepo,
  ReservationsRepo,
  ServerAddress,
  ServersRepo,
  TenantDatabase,
  TenantDatabasesRepo,
} from '@tenantdb/catalog';
import type {
  Allocated,
  AllocateRequest,
  Allocation,
  Provisioned,
  Provisioning,
  Rotated,
} from '@tenantdb/contracts';
import { BadRequestError, ConflictError, NotFoundError, UnavailableError } from '@tenantdb/http';
import { type Queues, recordUnmetDemand } from '@tenantdb/jobs';
import type { Logger } from '@tenantdb/observability';
import {
  describePgError,
  generateTenantNames,
  PoolServerBusyError,
  PoolServerUnavailableError,
  type TenantOps,
} from '@tenantdb/pool-server';
import { generatePassword, type SecretBox } from '@tenantdb/secrets';
import { sql } from 'kysely';
import type { ServiceMetrics } from '../metrics';

export interface RequestContext {
  actor: string;
  requestId: string;
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
  config: {
    strategy: PlacementStrategy;
    retryAfterSeconds: number;
    defaultDriver: 'local' | 'swarm' | 'kubernetes';
  };
}

/** How often a request tries another pool when the chosen one fails at the SQL step. */
const POOL_ATTEMPTS = 3;
/** How long a duplicate request waits for the one already creating the same database. */
const DUPLICATE_WAIT_MS = 15_000;
const CREATING = ['creating'] as const;

type Reservation =
  | { kind: 'reserved'; server: ServerAddress; row: TenantDatabase; password: string; warm: boolean }
  | { kind: 'no-room' }
  | { kind: 'duplicate' };

export function createAllocationService(deps: AllocationDeps) {
  const {
    db,
    servers,
    reservations,
    tenants,
    plans,
    audit,
    secrets,
    tenantOps,
    queues,
    metrics,
    logger,
    config,
  } = deps;
  // Concurrent repeats of one instance inside this process share one attempt; across processes
  // the unique index on live rows decides and the loser waits for the winner.
  const inFlight = new Map<string, Promise<Allocated | Provisioning>>();

  function credentials(server: ServerAddress, row: TenantDatabase) {
    if (!server.host || !server.port)
      throw new UnavailableError('the server of this allocation has no address');
    return {
      db_server_id: server.id,
      db_host: server.host,
      db_port: server.port,
      db_name: row.db_name,
      db_user: row.db_user,
      db_password: secrets.decrypt(row.password_enc),
    };
  }

  function provisioning(message: string, dbServerId?: string): Provisioning {
    return {
      status: 'provisioning',
      message,
      retry_after: config.retryAfterSeconds,
      ...(dbServerId ? { db_server_id: dbServerId } : {}),
    };
  }

  function knownPlan(planTier: string, plan: Plan | undefined): Plan {
    if (!plan) throw new BadRequestError(`unknown plan_tier "${planTier}"`);
    return plan;
  }

  async function findPlan(planTier: string): Promise<Plan> {
    return knownPlan(planTier, await plans.find(planTier));
  }

  /**
   * Runs `fn` holding an allocation's rotation lock: an advisory lock on a catalog session (not a
   * transaction; `fn` gets that session), taken by every rotation and by the start of a release.
   * 'try' answers 409 when it is held; 'wait' waits for it (a rotation is one ALTER ROLE and one
   * update).
   */
  async function holdingRotationLock<T>(
    tenantDatabaseId: string,
    mode: 'try' | 'wait',
    fn: (conn: CatalogDb) => Promise<T>,
  ): Promise<T> {
    const key = `rotate:${tenantDatabaseId}`;
    return db.connection().execute(async (conn) => {
      if (mode === 'wait') await sql`SELECT pg_advisory_lock(hashtext(${key}))`.execute(conn);
      else {
        const { rows } = await sql<{
          locked: boolean;
        }>`SELECT pg_try_advisory_lock(hashtext(${key})) AS locked`.execute(conn);
        if (!rows[0]?.locked) throw new ConflictError('this allocation is being rotated or released; retry');
      }
      try {
        return await fn(conn);
      } finally {
        await sql`SELECT pg_advisory_unlock(hashtext(${key}))`.execute(conn);
      }
    });
  }

  /** Waits while another request creates this instance's database; undefined when it failed. */
  async function waitUntilSettled(instanceId: string): Promise<TenantDatabase | undefined> {
    const deadline = Date.now() + DUPLICATE_WAIT_MS;
    for (let delay = 10; ; delay = Math.min(delay * 2, 250)) {
      const row = await tenants.findLiveByInstance(instanceId);
      if (row?.status !== 'creating' || Date.now() > deadline) return row;
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  /** The answer for an instance that already has a live allocation. */
  async function answerExisting(
    row: TenantDatabase,
    req: { customer_id: string },
  ): Promise<Allocated | Provisioning | undefined> {
    if (row.customer_id !== req.customer_id) {
      throw new ConflictError('this instance_id is already allocated to another customer');
    }
    const settled = row.status === 'creating' ? await waitUntilSettled(row.instance_id!) : row;
    if (!settled) return undefined; // the other attempt failed: try afresh
    if (settled.status === 'creating') return provisioning('the database is still being created');
    if (settled.status === 'releasing') throw new ConflictError('this allocation is being released');
    const server = await servers.findById(settled.db_server_id);
    if (!server) throw new UnavailableError('the server of this allocation is missing from the catalog');
    return { status: 'allocated', ...credentials(server, settled) };
  }

  /** A slot on a pool with room, and the row that holds it (a warm database when the pool has one). */
  async function reserveShared(
    req: AllocateRequest,
    plan: Plan,
    ctx: RequestContext,
    excludeIds: string[],
  ): Promise<Reservation> {
    // Postgres may pick the reservation as a deadlock victim under contention (its row locks on
    // pools and warm rows meet other reservations, releases and refills): nothing was written,
    // so it is simply run again.
    for (let attempt = 1; ; attempt++) {
      try {
        return await reserveSharedOnce(req, plan, ctx, excludeIds);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if ((code === '40P01' || code === '40001') && attempt < 4) continue;
        throw err;
      }
    }
  }

  async function reserveSharedOnce(
    req: AllocateRequest,
    plan: Plan,
    ctx: RequestContext,
    excludeIds: string[],
  ): Promise<Reservation> {
    const password = generatePassword();
    const names = generateTenantNames();
    const request = {
      instance_id: req.instance_id,
      customer_id: req.customer_id,
      plan_tier: plan.plan_tier,
      connection_limit: plan.connection_limit,
      password_enc: secrets.encrypt(password),
      db_name: names.dbName,
      db_user: names.dbUser,
      actor: ctx.actor,
      request_id: ctx.requestId,
    };
    try {
      // Skip pools other requests hold first (no waiting); then wait for a held one; a pool that
      // filled up while we waited sends us round again as long as any pool has room. Each try is
      // one statement: a pool is held only while it runs.
      for (let round = 0; round < 10; round++) {
        const reserved =
          (await reservations.reserveShared(request, {
            strategy: config.strategy,
            excludeIds,
            skipLocked: true,
          })) ??
          (await reservations.reserveShared(request, {
            strategy: config.strategy,
            excludeIds,
            skipLocked: false,
          }));
        if (reserved) return { kind: 'reserved', ...reserved, password };
        if (!(await servers.hasPlaceableRoom(excludeIds))) return { kind: 'no-room' };
      }
      throw new UnavailableError('shared pools are contended; retry', 1);
    } catch (err) {
      if ((err as { constraint?: string }).constraint === 'tenant_databases_live_instance')
        return { kind: 'duplicate' };
      throw err;
    }
  }

  /** After a failure on the pool server: drop leftovers, fail the row, free the slot. */
  async function compensate(server: ServerAddress, row: TenantDatabase, err: unknown): Promise<void> {
    const reason = describePgError(err);
    logger.warn(
      { db_server_id: server.id, tenant_database_id: row.id, reason },
      'tenant database creation failed',
    );
    await tenantOps.drop(server, { dbName: row.db_name, dbUser: row.db_user }).catch(() => {
      // The server is unreachable: the reconciler removes what may be left once it is back.
    });
    await db.transaction().execute(async (trx) => {
      const failed = await tenants.transition(row.id, CREATING, 'failed', { status_reason: reason }, trx);
      if (failed) await servers.releaseSlot(server.id, trx);
    });
  }

  /** SQL on the server after the reservation committed; the row becomes ready or is compensated. */
  async function materialize(
    server: ServerAddress,
    row: TenantDatabase,
    password: string,
    warm = false,
  ): Promise<void> {
    const tenant = {
      dbName: row.db_name,
      dbUser: row.db_user,
      password,
      connectionLimit: row.connection_limit ?? 1,
    };
    try {
      await (warm ? tenantOps.claim(server, tenant) : tenantOps.create(server, tenant));
    } catch (err) {
      await compensate(server, row, err);
      throw err;
    }
    const ready = await tenants.transition(row.id, CREATING, 'ready', { ready_at: 'now' });
    if (!ready) throw new UnavailableError('the allocation changed while it was being created; retry', 1);
  }

  async function allocateShared(
    req: AllocateRequest,
    plan: Plan,
    ctx: RequestContext,
  ): Promise<Allocated | Provisioning> {
    const excluded: string[] = [];
    for (let attempt = 0; attempt < POOL_ATTEMPTS; attempt++) {
      const reservation = await reserveShared(req, plan, ctx, excluded);
      if (reservation.kind === 'duplicate') {
        const live = await tenants.findLiveByInstance(req.instance_id);
        const answer = live && (await answerExisting(live, req));
        if (answer) return answer;
        continue;
      }
      if (reservation.kind === 'no-room') {
        // Counted before the planner runs, so that it provisions for this instance too.
        await recordUnmetDemand(queues, req.instance_id);
        await queues.enqueue('grow-shared-capacity', { reason: 'allocation found no shared pool with room' });
        return provisioning('no shared pool has room; more capacity is being provisioned');
      }
      const { server, row, password, warm } = reservation;
      try {
        await materialize(server, row, password, warm);
      } catch (err) {
        if (err instanceof PoolServerUnavailableError) {
          excluded.push(server.id);
          continue;
        }
        if (err instanceof PoolServerBusyError) throw new UnavailableError('pool servers are busy; retry', 1);
        throw err;
      }
      return { status: 'allocated', ...credentials(server, row) };
    }
    throw new UnavailableError('pool servers are unavailable; retry later', config.retryAfterSeconds);
  }

  /**
   * Dedicated placement: one server per instance, created once; 202 until the worker has made
   * it active, then the tenant database is created there.
   */
  async function allocateDedicated(
    req: AllocateRequest,
    plan: Plan,
    ctx: RequestContext,
  ): Promise<{ server: DbServer; answer: ReturnType<typeof credentials> } | Provisioning> {
    let server = await servers.findDedicatedFor(req.instance_id);
    if (!server) {
      const suffix = req.instance_id.replaceAll('-', '').slice(0, 20);
      server = await db.transaction().execute(async (trx) => {
        const created = await servers.insert(
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
        );
        if (created) {
          await audit.record(
            {
              actor: ctx.actor,
              action: 'server.provision_dedicated',
              request_id: ctx.requestId,
              instance_id: req.instance_id,
              db_server_id: created.id,
              details: { plan_tier: plan.plan_tier },
            },
            trx,
          );
        }
        return created;
      });
      server ??= await servers.findDedicatedFor(req.instance_id);
      if (!server) throw new ConflictError('a server with this name already exists');
    }
    if (server.dedicated_to_customer_id !== req.customer_id) {
      throw new ConflictError('this instance_id belongs to another customer');
    }
    switch (server.status) {
      case 'provisioning':
      case 'initializing':
        // Enqueued on every poll: the job id makes it a no-op while queued, and a lost enqueue
        // (Redis was down on the first call) is made good on the next one.
        await queues.enqueue('provision-server', { server_id: server.id });
        return provisioning('the dedicated server is being provisioned', server.id);
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
      const answer = await answerExisting(live, req);
      if (answer?.status === 'allocated') return { server, answer };
      if (answer) return answer;
    }
    const password = generatePassword();
    const names = generateTenantNames();
    const row = await db
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
        await audit.record(
          {
            actor: ctx.actor,
            action: 'allocation.reserve',
            request_id: ctx.requestId,
            instance_id: req.instance_id,
            db_server_id: server.id,
            tenant_database_id: inserted.id,
            details: { plan_tier: plan.plan_tier, dedicated: true },
          },
          trx,
        );
        return inserted;
      })
      .catch((err) => {
        if ((err as { constraint?: string }).constraint === 'tenant_databases_live_instance')
          return undefined;
        throw err;
      });
    if (!row) {
      const again = await tenants.findLiveByInstance(req.instance_id);
      const answer = again && (await answerExisting(again, req));
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
    return { server, answer: credentials(server, row) };
  }

  async function allocateOnce(req: AllocateRequest, ctx: RequestContext): Promise<Allocated | Provisioning> {
    // Both reads at once: one round trip's wait instead of two. An existing allocation is answered
    // before the plan is judged, as a repeat must get the same answer.
    const [existing, found] = await Promise.all([
      tenants.findLiveByInstance(req.instance_id),
      plans.find(req.plan_tier),
    ]);
    if (existing) {
      const answer = await answerExisting(existing, req);
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
      const plan = await findPlan(req.plan_tier);
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

    /** Drop the database and role, free the slot. Already gone is success. */
    async release(instanceId: string, ctx: RequestContext): Promise<void> {
      const row = await tenants.findLiveByInstance(instanceId);
      if (!row) return;
      if (row.status === 'creating')
        throw new ConflictError('the allocation is still being created; retry shortly');
      // A rotation in flight is changing the role's password on the pool server: the release waits
      // for it (the rotation's lock), so that its ALTER ROLE never meets the drop; a rotation that
      // comes later finds the allocation releasing.
      const releasing =
        row.status === 'releasing'
          ? row
          : await holdingRotationLock(row.id, 'wait', (conn) =>
              tenants.transition(row.id, ['ready'], 'releasing', {}, conn),
            );
      if (!releasing) throw new ConflictError('the allocation changed concurrently; retry');
      const server = await servers.findById(row.db_server_id);
      if (server) {
        try {
          await tenantOps.drop(server, { dbName: row.db_name, dbUser: row.db_user });
        } catch (err) {
          if (err instanceof PoolServerUnavailableError) {
            throw new UnavailableError('the pool server is unreachable; the release will complete on retry');
          }
          throw err;
        }
      }
      await db.transaction().execute(async (trx) => {
        const released = await tenants.transition(
          row.id,
          ['releasing'],
          'released',
          { released_at: 'now' },
          trx,
        );
        if (!released) return;
        await servers.releaseSlot(row.db_server_id, trx);
        await audit.record(
          {
            actor: ctx.actor,
            action: 'allocation.release',
            request_id: ctx.requestId,
            instance_id: instanceId,
            db_server_id: row.db_server_id,
            tenant_database_id: row.id,
          },
          trx,
        );
      });
    },

    /**
     * A new password, applied on the server before it is stored and returned. Rotations of one
     * allocation, and the start of its release, are serialized by the rotation lock.
     */
    async rotate(instanceId: string, ctx: RequestContext): Promise<Rotated> {
      const row = await tenants.findLiveByInstance(instanceId);
      if (!row) throw new NotFoundError('no live allocation for this instance_id');
      if (row.status !== 'ready') throw new ConflictError(`the allocation is ${row.status}`);
      const server = await servers.findById(row.db_server_id);
      if (!server) throw new UnavailableError('the server of this allocation is missing from the catalog');
      return holdingRotationLock(row.id, 'try', async (conn) => {
        const current = await tenants.findLiveByInstance(instanceId, conn);
        if (current?.id !== row.id || current.status !== 'ready')
          throw new ConflictError('the allocation changed; retry');
        const password = generatePassword();
        try {
          await tenantOps.setPassword(server, row.db_user, password);
        } catch (err) {
          if (err instanceof PoolServerUnavailableError)
            throw new UnavailableError('the pool server is unreachable');
          throw err;
        }
        try {
          await tenants.updatePassword(row.id, secrets.encrypt(password), conn);
        } catch (err) {
          // Not stored: put the stored password back so the catalog and the server agree.
          await tenantOps
            .setPassword(server, row.db_user, secrets.decrypt(current.password_enc))
            .catch(() => {});
          throw err;
        }
        await audit.record(
          {
            actor: ctx.actor,
            action: 'allocation.rotate',
            request_id: ctx.requestId,
            instance_id: instanceId,
            db_server_id: server.id,
            tenant_database_id: row.id,
          },
          conn,
        );
        return {
          status: 'rotated',
          ...credentials(server, { ...row, password_enc: secrets.encrypt(password) }),
        };
      });
    },
  };
}

export type AllocationService = ReturnType<typeof createAllocationService>;

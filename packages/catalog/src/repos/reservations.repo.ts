import { sql } from 'kysely';
import { isLiveInstanceViolation } from '../constraints';
import type { CatalogDb, Executor } from '../db';
import type { DbServer, TenantDatabase } from '../types';

export type PlacementStrategy = 'pack' | 'spread';

export interface ReserveOptions {
  strategy: PlacementStrategy;
  /** Servers that just failed for this request: try another. */
  excludeIds?: string[];
  /**
   * true: skip pools another statement holds (no waiting, spreads concurrent requests);
   * false: wait for the lock, so a pool with room is never missed only because it was busy.
   */
  skipLocked: boolean;
}

/** Who asks for the slot, and what the tenant row it holds says. */
export interface SharedReservationRequest {
  instance_id: string;
  customer_id: string;
  plan_tier: string;
  connection_limit: number;
  /**
   * The id, names and password (encrypted for that id) of a new row, used only when the pool has
   * no warm database: a claimed warm one keeps its own (encrypted for its row at refill).
   */
  id: string;
  password_enc: string;
  db_name: string;
  db_user: string;
  actor: string;
  request_id: string;
}

/** How to reach a server as its admin: what the SQL on a pool needs. */
export type ServerAddress = Pick<
  DbServer,
  'id' | 'host' | 'port' | 'admin_user' | 'admin_password_enc' | 'admin_database'
>;

export interface SharedReservation {
  /** The row holding the slot, in `creating`: a claimed warm database or a new one. */
  row: TenantDatabase;
  warm: boolean;
  server: ServerAddress;
}

/**
 * What one reservation attempt did: took a slot; took none (no pool with room, or every one held
 * and `skipLocked`); or found the instance already holding a live row (the unique index
 * `tenant_databases_live_instance` refused it), in which case nothing was written.
 */
export type SharedReservationResult =
  | ({ kind: 'reserved' } & SharedReservation)
  | { kind: 'not-taken' }
  | { kind: 'duplicate' };

type ReservedRow = TenantDatabase & {
  warm: boolean;
  server_host: string | null;
  server_port: number | null;
  server_admin_user: string | null;
  server_admin_password_enc: string | null;
  server_admin_database: string;
};

/**
 * The reservation as one statement (see ReservationsRepo.reserveShared): a query of its own so
 * its plan can be checked on a large fleet.
 */
export function reserveSharedStatement(req: SharedReservationRequest, opts: ReserveOptions) {
  const order = opts.strategy === 'pack' ? sql`DESC` : sql`ASC`;
  const lock = opts.skipLocked ? sql`FOR UPDATE SKIP LOCKED` : sql`FOR UPDATE`;
  const exclude = opts.excludeIds ?? [];
  // The pool is picked by an uncorrelated scalar subquery, which runs once (an InitPlan). A
  // join against it did not: once db_servers had statistics, the planner re-ran it per row,
  // and with SKIP LOCKED the second run skipped the row just updated and took a second pool.
  // Were that to come back, `(SELECT id FROM pool)` below fails the whole statement.
  return sql<ReservedRow>`
    WITH pool AS (
      UPDATE db_servers s
         SET current_instances = s.current_instances + 1,
             status = CASE WHEN s.current_instances + 1 >= s.max_instances THEN 'full' ELSE s.status END,
             last_allocated_at = now(),
             updated_at = now()
       WHERE s.id = (SELECT id FROM db_servers
                      WHERE status = 'active' AND server_type = 'shared' AND allocation_strategy = 'auto'
                        AND health_status IN ('healthy', 'unknown')
                        AND current_instances < max_instances
                        AND NOT (id = ANY(${exclude}::uuid[]))
                      ORDER BY priority, (current_instances::float8 / max_instances) ${order}, id
                      LIMIT 1
                      ${lock})
         AND s.current_instances < s.max_instances
      RETURNING s.id, s.host, s.port, s.admin_user, s.admin_password_enc, s.admin_database
    ), claimed AS (
      UPDATE tenant_databases t
         SET instance_id = ${req.instance_id}, customer_id = ${req.customer_id},
             plan_tier = ${req.plan_tier}, connection_limit = ${req.connection_limit},
             status = 'creating', ready_at = NULL,
             updated_at = now()
        FROM (SELECT id FROM tenant_databases
               WHERE db_server_id = (SELECT id FROM pool) AND status = 'warm' AND ready_at IS NOT NULL
               ORDER BY created_at
               LIMIT 1
               FOR UPDATE SKIP LOCKED) w
       WHERE t.id = w.id
      RETURNING t.*
    ), created AS (
      INSERT INTO tenant_databases
             (id, instance_id, customer_id, db_server_id, db_name, db_user, password_enc, plan_tier,
              status, connection_limit)
      SELECT ${req.id}::uuid, ${req.instance_id}::uuid, ${req.customer_id}::uuid, pool.id, ${req.db_name}::text,
             ${req.db_user}::text, ${req.password_enc}::text, ${req.plan_tier}::text, 'creating',
             ${req.connection_limit}::integer
        FROM pool
       WHERE NOT EXISTS (SELECT FROM claimed)
      RETURNING *
    ), reserved AS (
      SELECT claimed.*, true AS warm FROM claimed
      UNION ALL
      SELECT created.*, false AS warm FROM created
    ), audited AS (
      INSERT INTO audit_events (actor, action, request_id, instance_id, db_server_id, tenant_database_id, details)
      SELECT ${req.actor}::text, 'allocation.reserve', ${req.request_id}::text, instance_id, db_server_id, id,
             jsonb_build_object('plan_tier', plan_tier, 'warm', warm)
        FROM reserved
    )
    SELECT reserved.*, pool.host AS server_host, pool.port AS server_port,
           pool.admin_user AS server_admin_user, pool.admin_password_enc AS server_admin_password_enc,
           pool.admin_database AS server_admin_database
      FROM reserved, pool`;
}

export type ReservationsRepo = ReturnType<typeof createReservationsRepo>;

export function createReservationsRepo(db: CatalogDb) {
  return {
    /**
     * Takes one slot on the best placeable shared pool (active, healthy or not yet checked, auto,
     * with room; by priority, then strategy), claims the pool's oldest ready warm database or
     * inserts a new row, and records the audit event — in one statement, so the pool's row lock is
     * held only while it runs and commits, not across round trips to the service. `not-taken` when
     * no pool could be taken (none with room, or all held and `skipLocked`). `duplicate` when the
     * unique index `tenant_databases_live_instance` refused the row: the instance already has a
     * live one, and nothing was written. The CHECK on current_instances is the last guard against
     * over-commit. In `trx` when given (database-service counts the customer's instances under
     * its lock there first); a duplicate then leaves that transaction aborted, to be rolled back.
     */
    async reserveShared(
      req: SharedReservationRequest,
      opts: ReserveOptions,
      trx: Executor = db,
    ): Promise<SharedReservationResult> {
      let rows: ReservedRow[];
      try {
        ({ rows } = await reserveSharedStatement(req, opts).execute(trx));
      } catch (err) {
        if (isLiveInstanceViolation(err)) return { kind: 'duplicate' };
        throw err;
      }
      const [first] = rows;
      if (!first) return { kind: 'not-taken' };
      const {
        warm,
        server_host,
        server_port,
        server_admin_user,
        server_admin_password_enc,
        server_admin_database,
        ...row
      } = first;
      const server: ServerAddress = {
        id: row.db_server_id,
        host: server_host,
        port: server_port,
        admin_user: server_admin_user,
        admin_password_enc: server_admin_password_enc,
        admin_database: server_admin_database,
      };
      return { kind: 'reserved', row, warm, server };
    },
  };
}

// Reads and writes over the whole fleet rather than one server: the worker's sweeps (health,
// reconcile, warm refill), the capacity planner's arithmetic and the metrics a scrape reads.
import { sql } from 'kysely';
import type { CatalogDb, Executor } from '../db';
import {
  type DbServer,
  PLACEABLE_HEALTH,
  type ServerStatus,
  SLOT_HOLDING_STATUSES,
  STARTING_STATUSES,
} from '../types';

/**
 * Slot drift as one set-based statement (a server's slots: its slot-holding tenant rows, and the
 * moves whose extra slot it holds, tenant_moves.slot_server_id) (see FleetRepo.recordSlotDrift): measures every server
 * that still exists, stores what changed, returns how many servers drift.
 */
export function recordSlotDriftStatement() {
  return sql<{ drifted: number }>`
    WITH measured AS (
      SELECT s.id, s.current_instances - count(t.id)::int
               - (SELECT count(*) FROM tenant_moves m WHERE m.slot_server_id = s.id)::int AS drift
        FROM db_servers s
        LEFT JOIN tenant_databases t
          ON t.db_server_id = s.id AND t.status = ANY(${SLOT_HOLDING_STATUSES}::text[])
       WHERE s.status <> 'decommissioned'
       GROUP BY s.id
    ), stored AS (
      UPDATE db_servers s
         SET slot_drift = m.drift
        FROM measured m
       WHERE s.id = m.id AND s.slot_drift <> m.drift
    )
    SELECT count(*)::int AS drifted FROM measured WHERE drift <> 0`;
}

/** Free and pending shared capacity (see FleetRepo.sharedCapacity). */
export function sharedCapacityStatement() {
  return sql<{ free: number; pending: number; pending_pools: number }>`
    SELECT coalesce(sum(max_instances - current_instances) FILTER (
             WHERE status = 'active' AND health_status = ANY(${PLACEABLE_HEALTH}::text[])), 0)::int AS free,
           coalesce(sum(max_instances) FILTER (WHERE status = ANY(${STARTING_STATUSES}::text[])), 0)::int AS pending,
           count(*) FILTER (WHERE status = ANY(${STARTING_STATUSES}::text[]))::int AS pending_pools
      FROM db_servers
     WHERE server_type = 'shared' AND allocation_strategy = 'auto'`;
}

/**
 * The servers tenantdb_catalog_drift has series for: drift of either kind, as the health checks
 * and reconcile stored it. Read through the partial index db_servers_drifted, which holds those
 * servers alone, so a scrape costs the same at 10 servers or 10,000 and counts no tenant row.
 */
export const driftedServers = sql<{ name: string; databases: number | null; slots: number }>`
  SELECT name, database_drift AS databases, slot_drift AS slots
    FROM db_servers
   WHERE (database_drift <> 0 OR slot_drift <> 0) AND status <> 'decommissioned'`;

/**
 * The count behind tenantdb_warm_databases: the warm rows ready to hand out, read from their partial
 * index (tenant_databases_warm_ready), not from a table that keeps every tenant row ever made.
 */
export const warmReady = sql<{ n: number }>`
  SELECT count(*)::int AS n FROM tenant_databases WHERE status = 'warm' AND ready_at IS NOT NULL`;

/** One server as the fleet gauges see it. */
export type FleetServer = Pick<
  DbServer,
  'name' | 'server_type' | 'status' | 'health_status' | 'max_instances' | 'current_instances'
>;

export type FleetRepo = ReturnType<typeof createFleetRepo>;

export function createFleetRepo(db: CatalogDb) {
  return {
    /** The status of each of these servers that has a row (reconcile's orphaned-object check). */
    async statusesOf(ids: readonly string[], trx: Executor = db): Promise<Pick<DbServer, 'id' | 'status'>[]> {
      if (ids.length === 0) return [];
      return trx.selectFrom('db_servers').select(['id', 'status']).where('id', 'in', ids).execute();
    },

    /** Every server in one of `statuses`. */
    listInStatuses(statuses: readonly ServerStatus[], trx: Executor = db): Promise<DbServer[]> {
      return trx.selectFrom('db_servers').selectAll().where('status', 'in', statuses).execute();
    },

    /** The ids of the servers in one of `statuses`. */
    async idsInStatuses(statuses: readonly ServerStatus[], trx: Executor = db): Promise<string[]> {
      const rows = await trx.selectFrom('db_servers').select('id').where('status', 'in', statuses).execute();
      return rows.map((r) => r.id);
    },

    /** The pools a warm refill sweep visits: active shared ones. */
    listActiveShared(trx: Executor = db): Promise<DbServer[]> {
      return trx
        .selectFrom('db_servers')
        .selectAll()
        .where('status', '=', 'active')
        .where('server_type', '=', 'shared')
        .execute();
    },

    /**
     * A page of the ids of servers in one of `statuses` that have an address, by id after
     * `after`: a sweep reads the fleet page by page, never all of it at once.
     */
    async pageWithAddress(
      statuses: readonly ServerStatus[],
      after: string | undefined,
      limit: number,
      trx: Executor = db,
    ): Promise<string[]> {
      const rows = await trx
        .selectFrom('db_servers')
        .select('id')
        .where('status', 'in', statuses)
        .where('host', 'is not', null)
        .$if(after !== undefined, (q) => q.where('id', '>', after!))
        .orderBy('id')
        .limit(limit)
        .execute();
      return rows.map((r) => r.id);
    },

    /**
     * Slots: current_instances must equal the rows holding one. Measures every server in one
     * statement and stores the difference in db_servers.slot_drift, where tenantdb_catalog_drift
     * reads it (so a scrape never counts tenant rows). Only changed values are written: on a
     * healthy catalog no row is touched or locked. Each drift is computed within one snapshot,
     * where a reservation's slot and its row are both there or both not; the value is right to
     * store even on a row updated since. Returns how many servers have drift.
     */
    async recordSlotDrift(trx: Executor = db): Promise<number> {
      const { rows } = await recordSlotDriftStatement().execute(trx);
      return rows[0]!.drifted;
    },

    /**
     * Shared auto pools, as the capacity planner counts them: free slots on the placeable ones,
     * slots and pools still starting. Read under the planner's lock (LOCK_KEYS.capacityPlanner),
     * so two planners never both see the same shortfall.
     */
    async sharedCapacity(
      trx: Executor = db,
    ): Promise<{ free: number; pending: number; pending_pools: number }> {
      const { rows } = await sharedCapacityStatement().execute(trx);
      return rows[0]!;
    },

    /** What the fleet gauges show, per server still in the fleet (not decommissioned). */
    gaugeServers(trx: Executor = db): Promise<FleetServer[]> {
      return trx
        .selectFrom('db_servers')
        .select(['name', 'server_type', 'status', 'health_status', 'max_instances', 'current_instances'])
        .where('status', '<>', 'decommissioned')
        .execute();
    },

    /** What tenantdb_catalog_drift reports (see driftedServers). */
    async readDrift(trx: Executor = db) {
      return (await driftedServers.execute(trx)).rows;
    },

    /** What tenantdb_warm_databases reports (see warmReady); undefined if nothing came back. */
    async countWarmReady(trx: Executor = db): Promise<number | undefined> {
      return (await warmReady.execute(trx)).rows[0]?.n;
    },
  };
}

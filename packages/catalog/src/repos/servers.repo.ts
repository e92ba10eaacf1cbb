import { sql } from 'kysely';
import type { CatalogDb, Executor } from '../db';
import {
  type DbServer,
  type DbServerUpdate,
  type NewDbServer,
  PLACEABLE_HEALTH,
  type ServerStatus,
  type ServerType,
} from '../types';
import { holdsNoTenant } from './retirement.repo';

export type ServersRepo = ReturnType<typeof createServersRepo>;

/**
 * What a listing of servers reads (database-service's toPool): a page of 100 decodes each row, so
 * the timestamps, placement and credentials it does not show stay in the catalog.
 */
export const LISTED_SERVER_COLUMNS = [
  'id',
  'name',
  'driver',
  'host',
  'port',
  'server_type',
  'allocation_strategy',
  'priority',
  'status',
  'status_reason',
  'health_status',
  'health_failures',
  'last_health_check',
  'last_health_latency_ms',
  'max_instances',
  'current_instances',
  'postgres_version',
  'postgres_major',
  'logical_replication',
  'created_at',
  'provisioned_at',
] as const satisfies readonly (keyof DbServer)[];
export type ListedServer = Pick<DbServer, (typeof LISTED_SERVER_COLUMNS)[number]>;

export function createServersRepo(db: CatalogDb) {
  return {
    findById(id: string, trx: Executor = db): Promise<DbServer | undefined> {
      return trx.selectFrom('db_servers').selectAll().where('id', '=', id).executeTakeFirst();
    },

    findByName(name: string, trx: Executor = db): Promise<DbServer | undefined> {
      return trx.selectFrom('db_servers').selectAll().where('name', '=', name).executeTakeFirst();
    },

    /**
     * The instance's dedicated server still in the fleet (one at most: the partial unique index
     * db_servers_dedicated_instance); a decommissioned one is history, and a retry gets a new one.
     */
    findDedicatedFor(instanceId: string, trx: Executor = db): Promise<DbServer | undefined> {
      return trx
        .selectFrom('db_servers')
        .selectAll()
        .where('dedicated_to_instance_id', '=', instanceId)
        .where('status', '<>', 'decommissioned')
        .executeTakeFirst();
    },

    /** Inserts a server; undefined when the name or the dedicated instance is already taken. */
    insert(row: NewDbServer, trx: Executor = db): Promise<DbServer | undefined> {
      return trx
        .insertInto('db_servers')
        .values(row)
        .onConflict((oc) => oc.doNothing())
        .returningAll()
        .executeTakeFirst();
    },

    update(id: string, patch: DbServerUpdate, trx: Executor = db): Promise<DbServer | undefined> {
      return trx
        .updateTable('db_servers')
        .set({ ...patch, updated_at: sql<Date>`now()` })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirst();
    },

    /** Updates a server only while its status is one of `from`; undefined when it is not. */
    updateIfStatus(
      id: string,
      from: readonly ServerStatus[],
      patch: DbServerUpdate,
      trx: Executor = db,
    ): Promise<DbServer | undefined> {
      return trx
        .updateTable('db_servers')
        .set({ ...patch, updated_at: sql<Date>`now()` })
        .where('id', '=', id)
        .where('status', 'in', from)
        .returningAll()
        .executeTakeFirst();
    },

    /** Back into placement from one of `from`: active, or full when it has no room left. */
    reopen(id: string, from: readonly ServerStatus[], trx: Executor = db): Promise<DbServer | undefined> {
      return trx
        .updateTable('db_servers')
        .set({
          status: sql<ServerStatus>`CASE WHEN current_instances >= max_instances THEN 'full' ELSE 'active' END`,
          status_reason: null,
          updated_at: sql<Date>`now()`,
        })
        .where('id', '=', id)
        .where('status', 'in', from)
        .returningAll()
        .executeTakeFirst();
    },

    /**
     * from → decommissioning, only while the server holds no tenant. Emptiness and the status flip
     * are one statement: a reservation needs the row active and bumps current_instances in the
     * same transaction as its tenant row, so it either commits first (and this matches nothing)
     * or waits on the row lock and then finds it no longer active.
     */
    markDecommissioning(
      id: string,
      from: readonly ServerStatus[],
      reason: string,
      trx: Executor = db,
    ): Promise<DbServer | undefined> {
      return trx
        .updateTable('db_servers')
        .set({ status: 'decommissioning', status_reason: reason, updated_at: sql<Date>`now()` })
        .where('id', '=', id)
        .where('status', 'in', from)
        .where(holdsNoTenant)
        .returningAll()
        .executeTakeFirst();
    },

    /**
     * The admin login a server is provisioned with, set once: a retried provision-server finds
     * it there and builds (or adopts) the server with the same one. Nothing when one is set.
     */
    async setAdminLoginIfUnset(
      id: string,
      adminUser: string,
      adminPasswordEnc: string,
      trx: Executor = db,
    ): Promise<void> {
      await trx
        .updateTable('db_servers')
        .set({ admin_user: adminUser, admin_password_enc: adminPasswordEnc, updated_at: sql<Date>`now()` })
        .where('id', '=', id)
        .where('admin_password_enc', 'is', null)
        .execute();
    },

    /** Is any shared pool placeable right now? (Decides between retrying and answering 202.) */
    async hasPlaceableRoom(excludeIds: string[] = [], trx: Executor = db): Promise<boolean> {
      const row = await trx
        .selectFrom('db_servers')
        .select(sql<number>`1`.as('one'))
        .where('status', '=', 'active')
        .where('server_type', '=', 'shared')
        .where('allocation_strategy', '=', 'auto')
        .where('health_status', 'in', PLACEABLE_HEALTH)
        .whereRef('current_instances', '<', 'max_instances')
        .$if(excludeIds.length > 0, (q) => q.where('id', 'not in', excludeIds))
        .limit(1)
        .executeTakeFirst();
      return row !== undefined;
    },

    /** A slot on one named server (dedicated servers): only when it is active with room. */
    async reserveSlotOn(serverId: string, trx: Executor = db): Promise<DbServer | undefined> {
      const { rows } = await sql<DbServer>`
        UPDATE db_servers
           SET current_instances = current_instances + 1,
               status = CASE WHEN current_instances + 1 >= max_instances THEN 'full' ELSE status END,
               last_allocated_at = now(),
               updated_at = now()
         WHERE id = ${serverId} AND status = 'active' AND current_instances < max_instances
        RETURNING *`.execute(trx);
      return rows[0];
    },

    /** Gives a slot back; a full server becomes active again. */
    async releaseSlot(serverId: string, trx: Executor = db): Promise<void> {
      await sql`
        UPDATE db_servers
           SET current_instances = current_instances - 1,
               status = CASE WHEN status = 'full' THEN 'active' ELSE status END,
               updated_at = now()
         WHERE id = ${serverId}`.execute(trx);
    },

    /** A page of servers, with the columns a listing shows (not credentials or orchestrator state). */
    async list(
      filter: { status?: ServerStatus; server_type?: ServerType; limit: number; offset: number },
      trx: Executor = db,
    ): Promise<{ rows: ListedServer[]; total: number }> {
      let query = trx.selectFrom('db_servers');
      if (filter.status) query = query.where('status', '=', filter.status);
      if (filter.server_type) query = query.where('server_type', '=', filter.server_type);
      const [rows, count] = await Promise.all([
        query
          .select(LISTED_SERVER_COLUMNS)
          .orderBy('priority')
          .orderBy('name')
          .limit(filter.limit)
          .offset(filter.offset)
          .execute(),
        query.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
      ]);
      return { rows, total: count.n };
    },

    /** Aggregates over servers that still exist (not decommissioned). */
    async stats(trx: Executor = db) {
      const rows = await trx
        .selectFrom('db_servers')
        .select((eb) => [
          'status',
          'server_type',
          eb.fn.countAll<number>().as('servers'),
          eb.fn.sum<number>('max_instances').as('capacity'),
          eb.fn.sum<number>('current_instances').as('used'),
        ])
        .where('status', '<>', 'decommissioned')
        .groupBy(['status', 'server_type'])
        .execute();
      return rows.map((r) => ({ ...r, capacity: Number(r.capacity), used: Number(r.used) }));
    },

    /** Deletes a server row: only for undoing an insert nothing else has seen yet. */
    async remove(id: string, trx: Executor = db): Promise<void> {
      await trx.deleteFrom('db_servers').where('id', '=', id).execute();
    },

    /** A server still in the fleet (not decommissioned) at this address, if any. */
    findByAddress(
      host: string,
      port: number,
      trx: Executor = db,
    ): Promise<Pick<DbServer, 'id' | 'name'> | undefined> {
      return trx
        .selectFrom('db_servers')
        .select(['id', 'name'])
        .where('host', '=', host)
        .where('port', '=', port)
        .where('status', '<>', 'decommissioned')
        .executeTakeFirst();
    },
  };
}

// Servers leaving the fleet: which ones are empty enough to go, and the writes that forget them
// (decommission-server and cleanup-failed-servers in database-worker).
import { type ExpressionBuilder, sql } from 'kysely';
import type { CatalogDb, Executor } from '../db';
import {
  type CatalogDatabase,
  type DbServer,
  FINISHED_MOVE_PHASES,
  SERVING_STATUSES,
  type ServerStatus,
  SLOT_HOLDING_STATUSES,
  type TenantDatabase,
} from '../types';

/**
 * A db_servers condition: the server holds no tenant — no slot used and no row holding one,
 * checked together in the statement that uses it, so a reservation committing meanwhile is seen.
 */
export function holdsNoTenant(eb: ExpressionBuilder<CatalogDatabase, 'db_servers'>) {
  return eb.and([
    eb('current_instances', '=', 0),
    eb.not(
      eb.exists(
        eb
          .selectFrom('tenant_databases as t')
          .select(sql`1`.as('one'))
          .whereRef('t.db_server_id', '=', 'db_servers.id')
          .where('t.status', 'in', SLOT_HOLDING_STATUSES),
      ),
    ),
  ]);
}

/** Dedicated servers that serve and hold no tenant: where both dedicated sweeps start. */
const emptyServingDedicated = (trx: Executor) =>
  trx
    .selectFrom('db_servers')
    .selectAll()
    .where('server_type', '=', 'dedicated')
    .where('status', 'in', SERVING_STATUSES)
    .where(holdsNoTenant);

export type RetirementRepo = ReturnType<typeof createRetirementRepo>;

export function createRetirementRepo(db: CatalogDb) {
  return {
    /** Servers in `status` that hold no tenant (see holdsNoTenant). */
    listEmptyIn(status: ServerStatus, trx: Executor = db): Promise<DbServer[]> {
      return trx
        .selectFrom('db_servers')
        .selectAll()
        .where('status', '=', status)
        .where(holdsNoTenant)
        .execute();
    },

    /**
     * Dedicated servers whose tenant was released before `releasedBefore` and that hold no tenant
     * now (nor any row released since): what the cleanup sweep retires. A server that never had
     * a tenant (still waiting for its first allocation) is not among them.
     */
    listReleasedDedicated(releasedBefore: Date, trx: Executor = db): Promise<DbServer[]> {
      return emptyServingDedicated(trx)
        .where(({ exists, not, selectFrom }) =>
          exists(
            selectFrom('tenant_databases as t')
              .select(sql`1`.as('one'))
              .whereRef('t.db_server_id', '=', 'db_servers.id')
              .where('t.status', '=', 'released'),
          ).and(
            not(
              exists(
                selectFrom('tenant_databases as t')
                  .select(sql`1`.as('one'))
                  .whereRef('t.db_server_id', '=', 'db_servers.id')
                  .where('t.status', '=', 'released')
                  .where('t.released_at', '>=', releasedBefore),
              ),
            ),
          ),
        )
        .execute();
    },

    /**
     * Dedicated servers no one will use: empty, serving, no move under way takes part in them, and
     * their instance's live tenant database is on another server (allocate never places an
     * instance that has one elsewhere: refuseIfHeldElsewhere). What a plan change to dedicated
     * leaves when its move could not be recorded, or ended before its worker retired the server;
     * the cleanup sweep retires them. No grace is needed: a plan change that uses the server has
     * its move recorded (or the server is not serving yet), and marking it is conditional on it
     * holding no tenant (markDecommissioning).
     */
    listUnusedDedicated(trx: Executor = db): Promise<DbServer[]> {
      return emptyServingDedicated(trx)
        .where(({ exists, not, selectFrom }) =>
          exists(
            selectFrom('tenant_databases as t')
              .select(sql`1`.as('one'))
              .whereRef('t.instance_id', '=', 'db_servers.dedicated_to_instance_id')
              .whereRef('t.db_server_id', '<>', 'db_servers.id')
              .where('t.status', 'in', SLOT_HOLDING_STATUSES),
          ).and(
            not(
              exists(
                selectFrom('tenant_moves as m')
                  .select(sql`1`.as('one'))
                  .where((eb) =>
                    eb.or([
                      eb('m.target_server_id', '=', eb.ref('db_servers.id')),
                      eb('m.source_server_id', '=', eb.ref('db_servers.id')),
                    ]),
                  )
                  .where('m.phase', 'not in', FINISHED_MOVE_PHASES),
              ),
            ),
          ),
        )
        .execute();
    },

    /** The server, when it is in `status` and holds no tenant; undefined otherwise. */
    findEmptyIn(id: string, status: ServerStatus, trx: Executor = db): Promise<DbServer | undefined> {
      return trx
        .selectFrom('db_servers')
        .selectAll()
        .where('id', '=', id)
        .where('status', '=', status)
        .where(holdsNoTenant)
        .executeTakeFirst();
    },

    /** The names of the warm databases on a server: what must be dropped where the server stays. */
    listWarmOn(serverId: string, trx: Executor = db): Promise<Pick<TenantDatabase, 'db_name' | 'db_user'>[]> {
      return trx
        .selectFrom('tenant_databases')
        .select(['db_name', 'db_user'])
        .where('db_server_id', '=', serverId)
        .where('status', '=', 'warm')
        .execute();
    },

    /** Forgets a server's warm rows: nobody owned them, and their databases went with it. */
    async deleteWarmOn(serverId: string, trx: Executor = db): Promise<void> {
      await trx
        .deleteFrom('tenant_databases')
        .where('db_server_id', '=', serverId)
        .where('status', '=', 'warm')
        .execute();
    },

    /** The last step of a server: decommissioned, with the time it went. */
    async markDecommissioned(id: string, trx: Executor = db): Promise<void> {
      await trx
        .updateTable('db_servers')
        .set({ status: 'decommissioned', deleted_at: sql<Date>`now()`, updated_at: sql<Date>`now()` })
        .where('id', '=', id)
        .execute();
    },
  };
}

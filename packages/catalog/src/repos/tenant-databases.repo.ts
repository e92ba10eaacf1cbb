import { sql } from 'kysely';
import type { CatalogDb, Executor } from '../db';
import {
  type NewTenantDatabase,
  SLOT_HOLDING_STATUSES,
  type TenantDatabase,
  type TenantDbStatus,
} from '../types';

export type TenantDatabasesRepo = ReturnType<typeof createTenantDatabasesRepo>;

export function createTenantDatabasesRepo(db: CatalogDb) {
  return {
    insert(row: NewTenantDatabase, trx: Executor = db): Promise<TenantDatabase> {
      return trx.insertInto('tenant_databases').values(row).returningAll().executeTakeFirstOrThrow();
    },

    /** The live (slot-holding) allocation of an instance: at most one, by a unique index. */
    findLiveByInstance(instanceId: string, trx: Executor = db): Promise<TenantDatabase | undefined> {
      return trx
        .selectFrom('tenant_databases')
        .selectAll()
        .where('instance_id', '=', instanceId)
        .where('status', 'in', SLOT_HOLDING_STATUSES)
        .executeTakeFirst();
    },

    /** The newest allocation of an instance in any state (released and failed ones included). */
    findLatestByInstance(instanceId: string, trx: Executor = db): Promise<TenantDatabase | undefined> {
      return trx
        .selectFrom('tenant_databases')
        .selectAll()
        .where('instance_id', '=', instanceId)
        .orderBy(sql`status IN ('creating', 'ready', 'releasing')`, 'desc')
        .orderBy('created_at', 'desc')
        .limit(1)
        .executeTakeFirst();
    },

    /** Moves a row from one of `from` to `to`; undefined when it was not in any of them. */
    transition(
      id: string,
      from: readonly TenantDbStatus[],
      to: TenantDbStatus,
      extra: { status_reason?: string | null; ready_at?: 'now'; released_at?: 'now' } = {},
      trx: Executor = db,
    ): Promise<TenantDatabase | undefined> {
      return trx
        .updateTable('tenant_databases')
        .set({
          status: to,
          updated_at: sql<Date>`now()`,
          ...(extra.status_reason !== undefined ? { status_reason: extra.status_reason } : {}),
          ...(extra.ready_at ? { ready_at: sql<Date>`now()` } : {}),
          ...(extra.released_at ? { released_at: sql<Date>`now()` } : {}),
        })
        .where('id', '=', id)
        .where('status', 'in', from)
        .returningAll()
        .executeTakeFirst();
    },

    async updatePassword(id: string, passwordEnc: string, trx: Executor = db): Promise<void> {
      await trx
        .updateTable('tenant_databases')
        .set({ password_enc: passwordEnc, updated_at: sql<Date>`now()` })
        .where('id', '=', id)
        .execute();
    },

    /** Rows per status on one server. */
    async countByStatus(serverId: string, trx: Executor = db): Promise<Record<string, number>> {
      const rows = await trx
        .selectFrom('tenant_databases')
        .select((eb) => ['status', eb.fn.countAll<number>().as('n')])
        .where('db_server_id', '=', serverId)
        .groupBy('status')
        .execute();
      return Object.fromEntries(rows.map((r) => [r.status, r.n]));
    },
  };
}

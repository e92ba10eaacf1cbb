import { sql } from 'kysely';
import type { CatalogDb, Executor } from '../db';
import {
  type NewTenantDatabase,
  SLOT_HOLDING_STATUSES,
  type TenantDatabase,
  type TenantDbStatus,
} from '../types';

/**
 * `status IN ('creating', 'ready', 'releasing')` with the statuses as literals: the predicate of the
 * live index, which ON CONFLICT must repeat to name it as the arbiter (parameters would not match).
 */
const IS_SLOT_HOLDING = sql<boolean>`status IN (${sql.join(SLOT_HOLDING_STATUSES.map((s) => sql.lit(s)))})`;

export type TenantDatabasesRepo = ReturnType<typeof createTenantDatabasesRepo>;

/**
 * What an insert did: the new row, or `duplicate` when the instance already holds a live row (the
 * partial unique index `tenant_databases_live_instance`); nothing was written then, and the
 * caller's transaction is still usable.
 */
export type TenantInsert = { kind: 'inserted'; row: TenantDatabase } | { kind: 'duplicate' };

export function createTenantDatabasesRepo(db: CatalogDb) {
  return {
    /**
     * Inserts a tenant row. A second live row for the instance is skipped (ON CONFLICT on the live
     * index, so a transaction around it is not aborted) and answered as `duplicate`; any other
     * unique violation is still an error.
     */
    async insert(row: NewTenantDatabase, trx: Executor = db): Promise<TenantInsert> {
      const inserted = await trx
        .insertInto('tenant_databases')
        .values(row)
        .onConflict((oc) => oc.column('instance_id').where(IS_SLOT_HOLDING).doNothing())
        .returningAll()
        .executeTakeFirst();
      return inserted ? { kind: 'inserted', row: inserted } : { kind: 'duplicate' };
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
        .orderBy(IS_SLOT_HOLDING, 'desc')
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

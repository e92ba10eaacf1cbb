import { sql } from 'kysely';
import type { CatalogDb, Executor } from '../db';
import {
  HELD_STATUSES,
  IN_FLIGHT_STATUSES,
  type NewTenantDatabase,
  ON_SERVER_STATUSES,
  SLOT_HOLDING_STATUSES,
  type SlotHoldingStatus,
  type TenantDatabase,
  type TenantDbStatus,
} from '../types';
import { createServersRepo } from './servers.repo';

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
  const servers = createServersRepo(db);

  /** Moves a row from one of `from` to `to`; undefined when it was not in any of them. */
  function transition(
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
  }

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

    /**
     * A warm row (no instance, not claimable until markWarmReady): written before its database is
     * made, so reconcile never takes a database being warmed for an orphan.
     */
    insertWarm(
      row: Pick<NewTenantDatabase, 'id' | 'db_server_id' | 'db_name' | 'db_user' | 'password_enc'> & {
        id: string;
      },
      trx: Executor = db,
    ): Promise<TenantDatabase> {
      return trx
        .insertInto('tenant_databases')
        .values({ ...row, status: 'warm' })
        .returningAll()
        .executeTakeFirstOrThrow();
    },

    findById(id: string, trx: Executor = db): Promise<TenantDatabase | undefined> {
      return trx.selectFrom('tenant_databases').selectAll().where('id', '=', id).executeTakeFirst();
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

    transition,

    /**
     * A slot-holding row leaves the slots (to failed or released) and its server gets the slot back,
     * in one transaction (the caller's, or one of its own): current_instances stays equal to the
     * rows holding a slot. Undefined, and nothing written, when the row was not in one of `from`.
     */
    async leaveSlot(
      id: string,
      from: readonly SlotHoldingStatus[],
      to: 'failed' | 'released',
      extra: { status_reason?: string | null } = {},
      trx: Executor = db,
    ): Promise<TenantDatabase | undefined> {
      const leave = async (t: Executor) => {
        const moved = await transition(
          id,
          from,
          to,
          { ...extra, ...(to === 'released' ? { released_at: 'now' } : {}) },
          t,
        );
        if (moved) await servers.releaseSlot(moved.db_server_id, t);
        return moved;
      };
      return trx.isTransaction ? leave(trx) : db.transaction().execute(leave);
    },

    /**
     * A rotation's first step: its new password stored as pending on a ready row, before the pool
     * server gets it. False, nothing written, when the row is not ready.
     */
    async setPendingPassword(id: string, pendingEnc: string, trx: Executor = db): Promise<boolean> {
      const set = await trx
        .updateTable('tenant_databases')
        .set({ password_pending_enc: pendingEnc, updated_at: sql<Date>`now()` })
        .where('id', '=', id)
        .where('status', '=', 'ready')
        .executeTakeFirst();
      return Number(set.numUpdatedRows) > 0;
    },

    /**
     * Settles a pending password: 'promote' makes it the row's password (the pool server has it),
     * 'drop' forgets it (the server kept the current one). Only while the row still holds this
     * pending value, so a later rotation's is never touched; false when it did not.
     */
    async settlePendingPassword(
      id: string,
      pendingEnc: string,
      outcome: 'promote' | 'drop',
      trx: Executor = db,
    ): Promise<boolean> {
      const settled = await trx
        .updateTable('tenant_databases')
        .set({
          ...(outcome === 'promote' ? { password_enc: pendingEnc } : {}),
          password_pending_enc: null,
          updated_at: sql<Date>`now()`,
        })
        .where('id', '=', id)
        .where('password_pending_enc', '=', pendingEnc)
        .executeTakeFirst();
      return Number(settled.numUpdatedRows) > 0;
    },

    /** Live rows a rotation left with a pending password, untouched since `before` (reconcile's repair). */
    findPendingPasswords(before: Date, trx: Executor = db): Promise<TenantDatabase[]> {
      return trx
        .selectFrom('tenant_databases')
        .selectAll()
        .where('password_pending_enc', 'is not', null)
        .where('updated_at', '<', before)
        .where('status', '=', 'ready')
        .execute();
    },

    /**
     * The heartbeat of an attempt still creating this row (updated_at = now): findStuck, and so
     * reconcile, leaves a row alone while its attempt beats. False when the row is no longer creating.
     */
    async heartbeat(id: string, trx: Executor = db): Promise<boolean> {
      const touched = await trx
        .updateTable('tenant_databases')
        .set({ updated_at: sql<Date>`now()` })
        .where('id', '=', id)
        .where('status', '=', 'creating')
        .executeTakeFirst();
      return Number(touched.numUpdatedRows) > 0;
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

    /** The names of the rows that stand for a database on the server: what reconcile compares pg_database with. */
    listNamesOnServer(
      serverId: string,
      trx: Executor = db,
    ): Promise<Pick<TenantDatabase, 'db_name' | 'db_user'>[]> {
      return trx
        .selectFrom('tenant_databases')
        .select(['db_name', 'db_user'])
        .where('db_server_id', '=', serverId)
        .where('status', 'in', ON_SERVER_STATUSES)
        .execute();
    },

    /**
     * Rows in flight (creating, releasing) not touched since `before`: a process died moving them.
     * An attempt still creating a row touches it (heartbeat) well within the bound.
     */
    findStuck(
      before: Date,
      trx: Executor = db,
    ): Promise<(TenantDatabase & { status: (typeof IN_FLIGHT_STATUSES)[number] })[]> {
      return trx
        .selectFrom('tenant_databases')
        .selectAll()
        .where('status', 'in', IN_FLIGHT_STATUSES)
        .where('updated_at', '<', before)
        .$narrowType<{ status: (typeof IN_FLIGHT_STATUSES)[number] }>()
        .execute();
    },

    /**
     * Warm rows created before `before` whose database was never made (ready_at still null): a
     * refill died between the row and its database. Deletes them and says how many went.
     */
    async deleteUnmadeWarm(before: Date, trx: Executor = db): Promise<number> {
      const rows = await trx
        .deleteFrom('tenant_databases')
        .where('status', '=', 'warm')
        .where('ready_at', 'is', null)
        .where('created_at', '<', before)
        .returning('id')
        .execute();
      return rows.length;
    },

    /** A server's rows in one of `statuses` (warm ones, made or being made; those on the server). */
    async countOnServer(
      serverId: string,
      statuses: readonly TenantDbStatus[],
      trx: Executor = db,
    ): Promise<number> {
      const row = await trx
        .selectFrom('tenant_databases')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('db_server_id', '=', serverId)
        .where('status', 'in', statuses)
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },

    /** A warm row whose database is made: claimable from now on (ready_at set). */
    async markWarmReady(id: string, trx: Executor = db): Promise<void> {
      await trx
        .updateTable('tenant_databases')
        .set({ ready_at: sql<Date>`now()`, updated_at: sql<Date>`now()` })
        .where('id', '=', id)
        .where('status', '=', 'warm')
        .execute();
    },

    /** Deletes a row (a warm row whose database could not be made). */
    async delete(id: string, trx: Executor = db): Promise<void> {
      await trx.deleteFrom('tenant_databases').where('id', '=', id).execute();
    },

    /**
     * Of these instances, how many have no database and are not getting one (no row creating or
     * ready): the capacity planner's unmet demand.
     */
    async countWithoutHeld(instanceIds: readonly string[], trx: Executor = db): Promise<number> {
      if (instanceIds.length === 0) return 0;
      const { rows } = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM unnest(${instanceIds}::uuid[]) AS w(instance_id)
         WHERE NOT EXISTS (SELECT 1 FROM tenant_databases t
                            WHERE t.instance_id = w.instance_id AND t.status = ANY(${HELD_STATUSES}::text[]))`.execute(
        trx,
      );
      return Number(rows[0]!.n);
    },
  };
}

// Tenant moves (migration 0014): the durable record the worker advances phase by phase. Every phase
// change is conditional on the phase it leaves, so a second delivery of a job, a cancel and the
// reconciler can never both move one record; every slot taken or freed is written in the same
// transaction as the record that says so.
import { sql } from 'kysely';
import type { CatalogDb, CatalogTrx, Executor } from '../db';
import {
  ACTIVE_MOVE_PHASES,
  FINISHED_MOVE_PHASES,
  type MovePhase,
  type TenantMove,
  type TenantMoveUpdate,
} from '../types';
import { type MoveRequest, type MoveStart, startMove, takeSlotOn } from './moves-start';
import { createServersRepo } from './servers.repo';

export type MovesRepo = ReturnType<typeof createMovesRepo>;

export function createMovesRepo(db: CatalogDb) {
  const servers = createServersRepo(db);

  return {
    /** See startMove (moves-start.ts): the move recorded with its target slot taken, or why not. */
    start: (req: MoveRequest): Promise<MoveStart> => startMove(db, req),

    findById(id: string, trx: Executor = db): Promise<TenantMove | undefined> {
      return trx.selectFrom('tenant_moves').selectAll().where('id', '=', id).executeTakeFirst();
    },

    /** The tenant's move under way, if any (one at most, by the partial unique index). */
    findActiveForTenant(tenantDatabaseId: string, trx: Executor = db): Promise<TenantMove | undefined> {
      return trx
        .selectFrom('tenant_moves')
        .selectAll()
        .where('tenant_database_id', '=', tenantDatabaseId)
        .where('phase', 'in', ACTIVE_MOVE_PHASES)
        .executeTakeFirst();
    },

    /** Newest first; filtered by phase, by a server taking part (source or target), by tenant. */
    async list(
      filter: {
        phase?: MovePhase;
        server_id?: string;
        tenant_database_id?: string;
        limit: number;
        offset: number;
      },
      trx: Executor = db,
    ): Promise<{ rows: TenantMove[]; total: number }> {
      let query = trx.selectFrom('tenant_moves');
      if (filter.phase) query = query.where('phase', '=', filter.phase);
      if (filter.tenant_database_id)
        query = query.where('tenant_database_id', '=', filter.tenant_database_id);
      const serverId = filter.server_id;
      if (serverId)
        query = query.where((eb) =>
          eb.or([eb('source_server_id', '=', serverId), eb('target_server_id', '=', serverId)]),
        );
      const [rows, count] = await Promise.all([
        query
          .selectAll()
          .orderBy('created_at', 'desc')
          .orderBy('id')
          .limit(filter.limit)
          .offset(filter.offset)
          .execute(),
        query.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
      ]);
      return { rows, total: Number(count.n) };
    },

    /**
     * A move in awaiting_target whose dedicated server is active now: the target slot taken and
     * the move on to pending, in one transaction. 'no-room' (nothing written) when the server had
     * no slot to give; 'moved-on' when the move had left awaiting_target (a repeat).
     */
    async takeTargetSlot(move: TenantMove): Promise<'taken' | 'no-room' | 'moved-on'> {
      return db.transaction().execute(async (trx) => {
        const row = await trx
          .selectFrom('tenant_moves')
          .select('phase')
          .where('id', '=', move.id)
          .forUpdate()
          .executeTakeFirst();
        if (row?.phase !== 'awaiting_target') return 'moved-on';
        if (!(await takeSlotOn(move.target_server_id, trx))) return 'no-room';
        await trx
          .updateTable('tenant_moves')
          .set({ phase: 'pending', slot_server_id: move.target_server_id, updated_at: sql<Date>`now()` })
          .where('id', '=', move.id)
          .execute();
        return 'taken';
      });
    },

    /** Moves `from` one of these phases to `to` (with `patch`); undefined when it was in none. */
    advance(
      id: string,
      from: readonly MovePhase[],
      to: MovePhase,
      patch: Omit<TenantMoveUpdate, 'phase' | 'id'> = {},
      trx: Executor = db,
    ): Promise<TenantMove | undefined> {
      return trx
        .updateTable('tenant_moves')
        .set({
          ...patch,
          phase: to,
          updated_at: sql<Date>`now()`,
          ...((FINISHED_MOVE_PHASES as readonly string[]).includes(to)
            ? { finished_at: sql<Date>`now()` }
            : {}),
        })
        .where('id', '=', id)
        .where('phase', 'in', from)
        .returningAll()
        .executeTakeFirst();
    },

    /** Progress and heartbeat (updated_at) while the move is still in `phase`; false when it is not. */
    async progress(
      id: string,
      phase: MovePhase,
      patch: Pick<
        TenantMoveUpdate,
        | 'bytes_total'
        | 'bytes_copied'
        | 'tables_total'
        | 'tables_synced'
        | 'lag_bytes'
        | 'method'
        | 'method_reason'
      >,
      trx: Executor = db,
    ): Promise<boolean> {
      const done = await trx
        .updateTable('tenant_moves')
        .set({ ...patch, updated_at: sql<Date>`now()` })
        .where('id', '=', id)
        .where('phase', '=', phase)
        .executeTakeFirst();
      return Number(done.numUpdatedRows) > 0;
    },

    /**
     * The cut-over in the catalog, one transaction: the tenant row now names the target (only if it
     * still names the source and is ready), the move's slot becomes the source's (so both slots
     * stay held until the source is dropped), the move leaves cutting_over, and the audit event.
     * A plan change's plan (and its connection limit) is written onto the tenant row in the same
     * statement. False, nothing written, when the tenant row or the move was not as expected.
     */
    async cutOver(move: TenantMove, writeBlockedMs: number): Promise<boolean> {
      return db.transaction().execute(async (trx: CatalogTrx) => {
        const planTier = move.plan_tier;
        const switched = await trx
          .updateTable('tenant_databases')
          .set({
            db_server_id: move.target_server_id,
            updated_at: sql<Date>`now()`,
            ...(planTier
              ? {
                  plan_tier: planTier,
                  connection_limit: sql<number>`(SELECT connection_limit FROM plans WHERE plan_tier = ${planTier})`,
                }
              : {}),
          })
          .where('id', '=', move.tenant_database_id)
          .where('db_server_id', '=', move.source_server_id)
          .where('status', '=', 'ready')
          .returning(['id', 'instance_id'])
          .executeTakeFirst();
        if (!switched) return false;
        const advanced = await trx
          .updateTable('tenant_moves')
          .set({
            phase: 'cleaning_up',
            slot_server_id: move.source_server_id,
            cut_over_at: sql<Date>`now()`,
            write_blocked_ms: writeBlockedMs,
            updated_at: sql<Date>`now()`,
          })
          .where('id', '=', move.id)
          .where('phase', '=', 'cutting_over')
          .executeTakeFirst();
        if (Number(advanced.numUpdatedRows) !== 1)
          throw new Error('the move left cutting_over during its cut-over');
        await trx
          .insertInto('audit_events')
          .values({
            actor: 'database-worker',
            action: 'move.cut_over',
            instance_id: switched.instance_id,
            db_server_id: move.target_server_id,
            tenant_database_id: move.tenant_database_id,
            details: {
              move_id: move.id,
              source_server_id: move.source_server_id,
              write_blocked_ms: writeBlockedMs,
              ...(planTier ? { plan_tier: planTier } : {}),
            },
          })
          .execute();
        return true;
      });
    },

    /**
     * Ends a move (`to`: done, cancelled, failed) and frees the slot it still holds, with the audit
     * event, in one transaction. Undefined, nothing written, when the move was not in one of `from`.
     */
    async finish(
      id: string,
      from: readonly MovePhase[],
      to: (typeof FINISHED_MOVE_PHASES)[number],
      error: string | null,
    ): Promise<TenantMove | undefined> {
      return db.transaction().execute(async (trx) => {
        const before = await trx
          .selectFrom('tenant_moves')
          .select('slot_server_id')
          .where('id', '=', id)
          .where('phase', 'in', from)
          .forUpdate()
          .executeTakeFirst();
        if (!before) return undefined;
        const ended = await trx
          .updateTable('tenant_moves')
          .set({
            phase: to,
            slot_server_id: null,
            ...(error !== null ? { error: error.slice(0, 1000) } : {}),
            updated_at: sql<Date>`now()`,
            finished_at: sql<Date>`now()`,
          })
          .where('id', '=', id)
          .returningAll()
          .executeTakeFirstOrThrow();
        if (before.slot_server_id) await servers.releaseSlot(before.slot_server_id, trx);
        await trx
          .insertInto('audit_events')
          .values({
            actor: 'database-worker',
            action: `move.${to}`,
            db_server_id: before.slot_server_id,
            tenant_database_id: ended.tenant_database_id,
            details: { move_id: id, ...(error ? { error: error.slice(0, 200) } : {}) },
          })
          .execute();
        return ended;
      });
    },

    /**
     * Moves whose worker should be at it but has not touched them since `before` (a lost job, a
     * worker killed past its retries), and moves in grace whose source is due to be dropped.
     */
    findStale(before: Date, trx: Executor = db): Promise<TenantMove[]> {
      return trx
        .selectFrom('tenant_moves')
        .selectAll()
        .where((eb) =>
          eb.or([
            eb.and([
              eb('phase', 'in', ACTIVE_MOVE_PHASES),
              eb('phase', '<>', 'grace'),
              eb('updated_at', '<', before),
            ]),
            eb.and([eb('phase', '=', 'grace'), eb('drop_source_after', '<=', sql<Date>`now()`)]),
          ]),
        )
        .execute();
    },

    /** Database names a server holds for moves under way (reconcile must not take them for orphans). */
    async namesHeldOn(serverId: string, trx: Executor = db): Promise<{ db_name: string; db_user: string }[]> {
      return trx
        .selectFrom('tenant_moves as m')
        .innerJoin('tenant_databases as t', 't.id', 'm.tenant_database_id')
        .select(['t.db_name', 't.db_user'])
        .where('m.phase', 'in', ACTIVE_MOVE_PHASES)
        .where((eb) =>
          eb.or([eb('m.source_server_id', '=', serverId), eb('m.target_server_id', '=', serverId)]),
        )
        .execute();
    },
  };
}

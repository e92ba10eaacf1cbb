// Drains (migration 0018): a server emptied by moving every tenant off it. The server row carries
// the drain (status draining → drained, when it started, what the drain-server job last found in
// its way); the moves are tenant_moves rows like any other. What is left is always read from the
// catalog, never counted along the way, so a drain resumed after a crash sees the truth.
import { sql } from 'kysely';
import type { CatalogDb, Executor } from '../db';
import {
  ACTIVE_MOVE_PHASES,
  type DbServer,
  type DrainBlock,
  type ServerStatus,
  SLOT_HOLDING_STATUSES,
  type TenantDatabase,
} from '../types';

export type DrainsRepo = ReturnType<typeof createDrainsRepo>;

/** A tenant still on a draining server, with what its moves off it since the drain began did. */
export interface DrainTenant {
  tenant: TenantDatabase;
  /** Its move under way (off this server or onto it), if any. */
  active_move_id: string | null;
  /** Moves off this server that failed since the drain started, and the last one's error. */
  failures: number;
  last_error: string | null;
}

export interface DrainFigures {
  tenants_left: number;
  warm_left: number;
  moves_running: number;
  moves_failed: number;
}

export function createDrainsRepo(db: CatalogDb) {
  return {
    /**
     * Starts a drain: out of placement (draining) with the drain's record reset, only from one of
     * `from`; undefined when the server was in none (the caller decides again on its status).
     */
    start(
      id: string,
      from: readonly ServerStatus[],
      requestedBy: string,
      trx: Executor = db,
    ): Promise<DbServer | undefined> {
      return trx
        .updateTable('db_servers')
        .set({
          status: 'draining',
          status_reason: `draining, requested by ${requestedBy}`,
          drain_started_at: sql<Date>`now()`,
          drain_requested_by: requestedBy,
          drain_checked_at: null,
          drain_finished_at: null,
          drain_blocked: '[]',
          updated_at: sql<Date>`now()`,
        })
        .where('id', '=', id)
        .where('status', 'in', from)
        .returningAll()
        .executeTakeFirst();
    },

    /** The tenants a drain still has to move: the rows holding a slot on the server. */
    async tenantsOn(
      server: Pick<DbServer, 'id' | 'drain_started_at'>,
      trx: Executor = db,
    ): Promise<DrainTenant[]> {
      const since = server.drain_started_at ?? new Date(0);
      const rows = await trx
        .selectFrom('tenant_databases as t')
        .selectAll('t')
        .select((eb) => [
          eb
            .selectFrom('tenant_moves as m')
            .select('m.id')
            .whereRef('m.tenant_database_id', '=', 't.id')
            .where('m.phase', 'in', ACTIVE_MOVE_PHASES)
            .limit(1)
            .as('active_move_id'),
          eb
            .selectFrom('tenant_moves as m')
            .select((f) => f.fn.countAll<number>().as('n'))
            .whereRef('m.tenant_database_id', '=', 't.id')
            .where('m.source_server_id', '=', server.id)
            .where('m.phase', '=', 'failed')
            .where('m.created_at', '>=', since)
            .as('failures'),
          eb
            .selectFrom('tenant_moves as m')
            .select('m.error')
            .whereRef('m.tenant_database_id', '=', 't.id')
            .where('m.source_server_id', '=', server.id)
            .where('m.phase', '=', 'failed')
            .orderBy('m.created_at', 'desc')
            .limit(1)
            .as('last_error'),
        ])
        .where('t.db_server_id', '=', server.id)
        .where('t.status', 'in', SLOT_HOLDING_STATUSES)
        .orderBy('t.created_at')
        .execute();
      return rows.map(({ active_move_id, failures, last_error, ...tenant }) => ({
        tenant: tenant as TenantDatabase,
        active_move_id: active_move_id ?? null,
        failures: Number(failures ?? 0),
        last_error: last_error ?? null,
      }));
    },

    /** The warm (unclaimed) rows of a server: a drain drops them rather than moving them. */
    warmOn(serverId: string, trx: Executor = db): Promise<TenantDatabase[]> {
      return trx
        .selectFrom('tenant_databases')
        .selectAll()
        .where('db_server_id', '=', serverId)
        .where('status', '=', 'warm')
        .execute();
    },

    /** Deletes a warm row whose database was dropped (only while it is still warm). */
    async forgetWarm(id: string, trx: Executor = db): Promise<void> {
      await trx.deleteFrom('tenant_databases').where('id', '=', id).where('status', '=', 'warm').execute();
    },

    /** What the job found at its step, while the server is still draining; false when it is not. */
    async record(id: string, blocked: DrainBlock[], trx: Executor = db): Promise<boolean> {
      const done = await trx
        .updateTable('db_servers')
        .set({ drain_blocked: JSON.stringify(blocked), drain_checked_at: sql<Date>`now()` })
        .where('id', '=', id)
        .where('status', '=', 'draining')
        .executeTakeFirst();
      return Number(done.numUpdatedRows) > 0;
    },

    /** The progress figures of a server's drain, read from the catalog now. */
    async figures(
      server: Pick<DbServer, 'id' | 'drain_started_at'>,
      trx: Executor = db,
    ): Promise<DrainFigures> {
      const since = server.drain_started_at ?? new Date(0);
      const { rows } = await sql<DrainFigures>`
        SELECT
          (SELECT count(*)::int FROM tenant_databases
            WHERE db_server_id = ${server.id} AND status = ANY(${SLOT_HOLDING_STATUSES}::text[])) AS tenants_left,
          (SELECT count(*)::int FROM tenant_databases
            WHERE db_server_id = ${server.id} AND status = 'warm') AS warm_left,
          (SELECT count(*)::int FROM tenant_moves
            WHERE source_server_id = ${server.id} AND phase = ANY(${ACTIVE_MOVE_PHASES}::text[])) AS moves_running,
          (SELECT count(*)::int FROM tenant_moves
            WHERE source_server_id = ${server.id} AND phase = 'failed' AND created_at >= ${since}) AS moves_failed`.execute(
        trx,
      );
      return rows[0]!;
    },

    /** Tenants still on draining servers, over the whole fleet (the metric: aggregate only). */
    async tenantsLeftOnDraining(trx: Executor = db): Promise<number> {
      const { rows } = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM tenant_databases t JOIN db_servers s ON s.id = t.db_server_id
         WHERE s.status = 'draining' AND t.status = ANY(${SLOT_HOLDING_STATUSES}::text[])`.execute(trx);
      return rows[0]!.n;
    },

    /**
     * draining → drained, with its audit event, in one transaction, only when nothing is left on
     * the server: no row holding a slot or warm, no move under way off it or onto it, and no slot
     * counted (current_instances 0). Undefined, nothing written, otherwise.
     */
    finish(id: string): Promise<DbServer | undefined> {
      return db.transaction().execute(async (trx) => {
        const drained = await trx
          .updateTable('db_servers as s')
          .set({
            status: 'drained',
            status_reason: 'drained: every tenant moved off',
            drain_finished_at: sql<Date>`now()`,
            drain_checked_at: sql<Date>`now()`,
            drain_blocked: '[]',
            updated_at: sql<Date>`now()`,
          })
          .where('s.id', '=', id)
          .where('s.status', '=', 'draining')
          .where('s.current_instances', '=', 0)
          .where(({ not, exists, selectFrom }) =>
            not(
              exists(
                selectFrom('tenant_databases as t')
                  .select('t.id')
                  .whereRef('t.db_server_id', '=', 's.id')
                  .where('t.status', 'in', [...SLOT_HOLDING_STATUSES, 'warm']),
              ),
            ),
          )
          .where(({ not, exists, selectFrom }) =>
            not(
              exists(
                selectFrom('tenant_moves as m')
                  .select('m.id')
                  .where('m.phase', 'in', ACTIVE_MOVE_PHASES)
                  .where((eb) =>
                    eb.or([eb('m.source_server_id', '=', id), eb('m.target_server_id', '=', id)]),
                  ),
              ),
            ),
          )
          .returningAll()
          .executeTakeFirst();
        if (!drained) return undefined;
        await trx
          .insertInto('audit_events')
          .values({
            actor: 'database-worker',
            action: 'server.drain_finished',
            db_server_id: id,
            details: { started_at: drained.drain_started_at?.toISOString() ?? null },
          })
          .execute();
        return drained;
      });
    },
  };
}

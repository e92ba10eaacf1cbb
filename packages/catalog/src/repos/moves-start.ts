// Starting a tenant move (MovesRepo.start): the record and its target slot in one transaction.
import { sql } from 'kysely';
import type { CatalogDb, Executor } from '../db';
import { LOCK_KEYS, takeTransactionLock } from '../locks';
import { FINISHED_MOVE_PHASES, PLACEABLE_HEALTH, type TenantMove } from '../types';
import type { PlacementStrategy } from './reservations.repo';

/** The partial unique index's predicate as literals, for ON CONFLICT to name it as the arbiter. */
const IS_ACTIVE = sql<boolean>`phase NOT IN (${sql.join(FINISHED_MOVE_PHASES.map((p) => sql.lit(p)))})`;

export interface MoveRequest {
  tenant_database_id: string;
  source_server_id: string;
  /** Undefined: anywhere with room, by the placement rules of shared pools. */
  target_server_id?: string;
  /** The source's major: a target must run this major or a newer one. */
  source_major: number | null;
  /** TENANTDB_MOVES_PER_SERVER: active moves one server may take part in. */
  moves_per_server: number;
  strategy: PlacementStrategy;
  requested_by: string;
  request_id: string | null;
  /** A plan change: the plan the cut-over writes onto the tenant row. */
  plan_tier?: string;
  /**
   * The target (named) is a dedicated server still being provisioned: the move is recorded in
   * awaiting_target without a slot, and takes one when the server is active (takeTargetSlot).
   */
  await_target?: boolean;
}

/**
 * What starting a move did: recorded it with its target slot taken; found no placeable pool with
 * room (anywhere); found the named target not placeable or full (`no-room`: the caller says why
 * from the server row); found a server at its bound of moves (`busy`); or found another move of the
 * tenant under way (`duplicate`). Nothing is written in any case but the first.
 */
export type MoveStart =
  | { kind: 'started'; move: TenantMove }
  | { kind: 'no-target' }
  | { kind: 'no-room' }
  | { kind: 'busy'; server_id: string }
  | { kind: 'duplicate' };

class Refused {
  constructor(readonly result: Exclude<MoveStart, { kind: 'started' }>) {}
}

const activeMovesOn = (serverId: string) => sql<number>`(
  SELECT count(*)::int FROM tenant_moves m
   WHERE m.phase <> ALL(${FINISHED_MOVE_PHASES}::text[])
     AND (m.source_server_id = ${serverId} OR m.target_server_id = ${serverId}))`;

/** The placeable shared pool a move "anywhere" goes to (see MovesRepo.start). */
export function moveTargetStatement(req: MoveRequest) {
  const order = req.strategy === 'pack' ? sql`DESC` : sql`ASC`;
  return sql<{ id: string }>`
    SELECT s.id FROM db_servers s
     WHERE s.status = 'active' AND s.server_type = 'shared' AND s.allocation_strategy = 'auto'
       AND s.health_status = ANY(${PLACEABLE_HEALTH}::text[])
       AND s.current_instances < s.max_instances
       AND s.id <> ${req.source_server_id}
       AND (s.postgres_major IS NULL OR ${req.source_major}::int IS NULL OR s.postgres_major >= ${req.source_major}::int)
       AND (SELECT count(*) FROM tenant_moves m
             WHERE m.phase <> ALL(${FINISHED_MOVE_PHASES}::text[])
               AND (m.source_server_id = s.id OR m.target_server_id = s.id)) < ${req.moves_per_server}
     ORDER BY s.priority, (s.current_instances::float8 / s.max_instances) ${order}, s.id
     LIMIT 1`;
}

/**
 * One slot on a placeable server with room, by a conditional update (the CHECK on
 * current_instances is the last guard); false when there was none.
 */
export async function takeSlotOn(serverId: string, trx: Executor): Promise<boolean> {
  const { rows } = await sql<{ id: string }>`
    UPDATE db_servers
       SET current_instances = current_instances + 1,
           status = CASE WHEN current_instances + 1 >= max_instances THEN 'full' ELSE status END,
           updated_at = now()
     WHERE id = ${serverId} AND status = 'active'
       AND health_status = ANY(${PLACEABLE_HEALTH}::text[])
       AND current_instances < max_instances
    RETURNING id`.execute(trx);
  return rows.length > 0;
}

async function countActiveOn(serverId: string, trx: Executor): Promise<number> {
  const { rows } = await sql<{ n: number }>`SELECT ${activeMovesOn(serverId)} AS n`.execute(trx);
  return Number(rows[0]!.n);
}

/**
 * Records a move in `pending` with its target slot taken, and its audit event, in one
 * transaction: the moves of both servers are counted under their locks (LOCK_KEYS.serverMoves,
 * in id order), the slot is taken by a conditional update (active, placeable health, room: the
 * CHECK on current_instances is the last guard), and the partial unique index
 * tenant_moves_active_tenant refuses a second move of the tenant.
 */
export async function startMove(db: CatalogDb, req: MoveRequest): Promise<MoveStart> {
  try {
    return await db.transaction().execute(async (trx) => {
      let targetId = req.target_server_id;
      if (!targetId) {
        const { rows } = await moveTargetStatement(req).execute(trx);
        targetId = rows[0]?.id;
        if (!targetId) throw new Refused({ kind: 'no-target' });
      }
      for (const id of [req.source_server_id, targetId].sort())
        await takeTransactionLock(trx, LOCK_KEYS.serverMoves(id));
      for (const id of [req.source_server_id, targetId]) {
        if ((await countActiveOn(id, trx)) >= req.moves_per_server)
          throw new Refused({ kind: 'busy', server_id: id });
      }
      const move = await trx
        .insertInto('tenant_moves')
        .values({
          tenant_database_id: req.tenant_database_id,
          source_server_id: req.source_server_id,
          target_server_id: targetId,
          slot_server_id: req.await_target ? null : targetId,
          phase: req.await_target ? 'awaiting_target' : 'pending',
          requested_by: req.requested_by,
          request_id: req.request_id,
          plan_tier: req.plan_tier ?? null,
        })
        .onConflict((oc) => oc.column('tenant_database_id').where(IS_ACTIVE).doNothing())
        .returningAll()
        .executeTakeFirst();
      if (!move) throw new Refused({ kind: 'duplicate' });
      if (!req.await_target && !(await takeSlotOn(targetId, trx))) throw new Refused({ kind: 'no-room' });
      await trx
        .insertInto('audit_events')
        .values({
          actor: req.requested_by,
          action: 'move.start',
          request_id: req.request_id,
          db_server_id: targetId,
          tenant_database_id: req.tenant_database_id,
          details: {
            move_id: move.id,
            source_server_id: req.source_server_id,
            target_server_id: targetId,
            ...(req.plan_tier ? { plan_tier: req.plan_tier } : {}),
          },
        })
        .execute();
      return { kind: 'started' as const, move };
    });
  } catch (err) {
    if (err instanceof Refused) return err.result;
    throw err;
  }
}

// Tenant moves, the API side: a request goes through beginMove (@tenantdb/catalog, moves-begin.ts,
// shared with the drain-server job): checked against the catalog, recorded with its target slot
// taken, handed to database-worker's move-tenant job; every refusal is a clear 4xx with nothing
// written. Rotations and releases are refused while the move runs (release-rotate.ts).
import {
  type AuditRepo,
  beginMove,
  CANCELLABLE_MOVE_PHASES,
  type CatalogDb,
  type MovesRepo,
  type PlacementStrategy,
  RESTORE_LOCKS_TENANT_PHASES,
  type RestoresRepo,
  type ServersRepo,
  type TenantDatabase,
  type TenantDatabasesRepo,
  type TenantMove,
  tenantRefusal,
} from '@tenantdb/catalog';
import type { Move, MoveList, MovesQuery, StartMoveRequest } from '@tenantdb/contracts';
import { BadRequestError, ConflictError, NotFoundError, type RequestContext } from '@tenantdb/http';
import type { Queues } from '@tenantdb/jobs';

export interface MovesDeps {
  db: CatalogDb;
  moves: MovesRepo;
  restores: Pick<RestoresRepo, 'findActiveForTenant'>;
  servers: Pick<ServersRepo, 'findById'>;
  tenants: Pick<TenantDatabasesRepo, 'findLiveByInstance' | 'findLatestByInstance' | 'findById'>;
  queues: Pick<Queues, 'enqueue'>;
  audit: Pick<AuditRepo, 'record'>;
  config: { movesPerServer: number; strategy: PlacementStrategy };
}

export function createMovesService(deps: MovesDeps) {
  const { db, moves, servers, tenants, queues, config } = deps;

  async function view(move: TenantMove): Promise<Move> {
    const tenant = await tenants.findById(move.tenant_database_id);
    return {
      id: move.id,
      tenant_database_id: move.tenant_database_id,
      instance_id: tenant?.instance_id ?? null,
      source_server_id: move.source_server_id,
      target_server_id: move.target_server_id,
      phase: move.phase,
      method: move.method,
      method_reason: move.method_reason,
      progress: {
        tables_total: move.tables_total,
        tables_synced: move.tables_synced,
        bytes_total: move.bytes_total,
        bytes_copied: move.bytes_copied,
        lag_bytes: move.lag_bytes,
      },
      write_blocked_ms: move.write_blocked_ms,
      cancel_requested: move.cancel_requested,
      error: move.error,
      requested_by: move.requested_by,
      created_at: move.created_at.toISOString(),
      updated_at: move.updated_at.toISOString(),
      cut_over_at: move.cut_over_at?.toISOString() ?? null,
      drop_source_after: move.drop_source_after?.toISOString() ?? null,
      finished_at: move.finished_at?.toISOString() ?? null,
      plan_tier: move.plan_tier,
    };
  }

  /** The allocation's server, when nothing keeps it from moving now (409 otherwise). */
  async function movable(row: TenantDatabase) {
    const refusal = tenantRefusal(row);
    if (refusal) throw new ConflictError(refusal);
    const source = await servers.findById(row.db_server_id);
    if (!source) throw new ConflictError('the server of this allocation is missing from the catalog');
    return source;
  }

  /** beginMove with this service's catalog and queue; its refusals as 4xx, nothing written. */
  async function begin(
    row: TenantDatabase,
    opts: { target_server_id?: string | undefined; plan_tier?: string; await_target?: boolean },
    ctx: RequestContext,
  ): Promise<Move> {
    // A restore swaps the tenant's database by name on its server: no move meets it half way.
    const restore = await deps.restores.findActiveForTenant(row.id);
    if (restore && (RESTORE_LOCKS_TENANT_PHASES as readonly string[]).includes(restore.phase))
      throw new ConflictError('a restore of this allocation is under way; retry once it is done');
    const begun = await beginMove(
      {
        db,
        moves,
        servers,
        tenants,
        config,
        enqueue: (moveId) => queues.enqueue('move-tenant', { move_id: moveId }),
      },
      { tenant: row, ...opts, requested_by: ctx.actor, request_id: ctx.requestId },
    );
    switch (begun.kind) {
      case 'started':
        return view(begun.move);
      case 'target-missing':
        throw new NotFoundError(begun.message);
      case 'same-server':
        throw new BadRequestError(begun.message);
      default:
        throw new ConflictError(begun.message);
    }
  }

  return {
    /** 409 unless the allocation may be moved now (ready; suspended and restricted ones move too): its server. */
    movable,

    async start(req: StartMoveRequest, ctx: RequestContext): Promise<Move> {
      const row = await tenants.findLiveByInstance(req.instance_id);
      if (!row) throw new NotFoundError('no live allocation for this instance_id');
      return begin(row, { target_server_id: req.target_server_id }, ctx);
    },

    /**
     * The move that carries a plan change of placement (plan-change.ts has checked the plan):
     * anywhere on a shared pool, or to the instance's dedicated server, waiting in awaiting_target
     * while that server is being provisioned.
     */
    async startForPlan(
      row: TenantDatabase,
      opts: { plan_tier: string; target_server_id?: string; await_target?: boolean },
      ctx: RequestContext,
    ): Promise<Move> {
      return begin(row, opts, ctx);
    },

    async get(id: string): Promise<Move> {
      const move = await moves.findById(id);
      if (!move) throw new NotFoundError('no move with this id');
      return view(move);
    },

    async list(query: MovesQuery): Promise<MoveList> {
      let tenantId: string | undefined;
      if (query.instance_id) {
        const row = await tenants.findLatestByInstance(query.instance_id);
        if (!row) return { moves: [], total_count: 0 };
        tenantId = row.id;
      }
      const { rows, total } = await moves.list({
        ...(query.phase ? { phase: query.phase } : {}),
        ...(query.server_id ? { server_id: query.server_id } : {}),
        ...(tenantId ? { tenant_database_id: tenantId } : {}),
        limit: query.limit,
        offset: query.offset,
      });
      return { moves: await Promise.all(rows.map(view)), total_count: total };
    },

    /** Before the cut-over only: the worker then undoes everything on the target. Idempotent. */
    async cancel(id: string, ctx: RequestContext): Promise<Move> {
      const move = await moves.findById(id);
      if (!move) throw new NotFoundError('no move with this id');
      if (move.phase === 'cancelling' || move.phase === 'cancelled') return view(move);
      const cancelled = await moves.advance(id, CANCELLABLE_MOVE_PHASES, 'cancelling', {
        cancel_requested: true,
      });
      if (!cancelled) {
        const now = (await moves.findById(id))!;
        if (now.phase === 'cancelling') return view(now);
        throw new ConflictError(
          now.cut_over_at
            ? 'the move has cut over; it cannot be cancelled'
            : `the move is ${now.phase}; it cannot be cancelled`,
        );
      }
      await deps.queues.enqueue('move-tenant', { move_id: id }).catch(() => {
        // The reconciler resumes a move no worker touches: the cancel is recorded either way.
      });
      await deps.audit.record({
        actor: ctx.actor,
        action: 'move.cancel',
        request_id: ctx.requestId,
        tenant_database_id: move.tenant_database_id,
        db_server_id: move.target_server_id,
        details: { move_id: id, was: move.phase },
      });
      return view(cancelled);
    },
  };
}

export type MovesService = ReturnType<typeof createMovesService>;

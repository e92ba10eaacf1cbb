// Tenant moves, the API side: checks a request against the catalog (every refusal a clear 4xx with
// nothing written), records the move with its target slot taken (MovesRepo.start), and hands it
// to database-worker's move-tenant job. Starting a move holds the allocation's rotation lock, so
// it never meets a rotation or the start of a release; those are refused while the move runs
// (release-rotate.ts). "Anywhere" and "to this server" are one call each, for an operator or a
// drain job alike.
import {
  type AuditRepo,
  CANCELLABLE_MOVE_PHASES,
  type CatalogDb,
  type DbServer,
  LOCK_KEYS,
  type MovesRepo,
  PLACEABLE_HEALTH,
  type PlacementStrategy,
  RESTORE_LOCKS_TENANT_PHASES,
  type RestoresRepo,
  type ServersRepo,
  type TenantDatabasesRepo,
  type TenantMove,
  trySessionLock,
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

/** Why a named server cannot take the tenant; undefined when it can (room is checked on insert). */
export function targetRefusal(
  target: DbServer,
  source: DbServer,
  tenant: { customer_id: string | null },
): string | undefined {
  if (target.id === source.id) return 'the tenant is already on this server';
  if (target.server_type === 'platform') return 'the target is a platform server';
  if (target.server_type === 'dedicated' && target.dedicated_to_customer_id !== tenant.customer_id)
    return 'the target is dedicated to another customer';
  if (target.status !== 'active') return `the target is ${target.status}`;
  if (!(PLACEABLE_HEALTH as readonly string[]).includes(target.health_status))
    return `the target is ${target.health_status}`;
  if (target.current_instances >= target.max_instances) return 'the target has no room';
  if (
    source.postgres_major !== null &&
    target.postgres_major !== null &&
    target.postgres_major < source.postgres_major
  )
    return `the target runs PostgreSQL ${target.postgres_major}, older than the source's ${source.postgres_major}`;
  return undefined;
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
    };
  }

  return {
    async start(req: StartMoveRequest, ctx: RequestContext): Promise<Move> {
      const row = await tenants.findLiveByInstance(req.instance_id);
      if (!row) throw new NotFoundError('no live allocation for this instance_id');
      if (row.status !== 'ready') throw new ConflictError(`the allocation is ${row.status}`);
      // The cut-over opens the tenant's login on the target and does not carry a restriction or a
      // suspension over yet: such a tenant is not moved until it is lifted or resumed.
      if (row.suspended_at)
        throw new ConflictError('the allocation is suspended; resume it before moving it');
      if (row.quota_state === 'restricted')
        throw new ConflictError('the allocation is restricted by its quota; it can be moved once lifted');
      const source = await servers.findById(row.db_server_id);
      if (!source) throw new ConflictError('the server of this allocation is missing from the catalog');
      if (req.target_server_id) {
        const target = await servers.findById(req.target_server_id);
        if (!target) throw new NotFoundError('no server with this target_server_id');
        if (target.id === source.id) throw new BadRequestError('the tenant is already on this server');
        const refusal = targetRefusal(target, source, row);
        if (refusal) throw new ConflictError(refusal);
      }
      const attempt = await trySessionLock(db, LOCK_KEYS.rotation(row.id), async () => {
        const current = await tenants.findById(row.id);
        if (current?.status !== 'ready' || current.db_server_id !== source.id)
          throw new ConflictError('the allocation changed; retry');
        const restore = await deps.restores.findActiveForTenant(row.id);
        if (restore && (RESTORE_LOCKS_TENANT_PHASES as readonly string[]).includes(restore.phase))
          throw new ConflictError('a restore of this allocation is under way; retry once it is done');
        if (current.password_pending_enc)
          throw new ConflictError('a password rotation of this allocation is not settled yet; retry later');
        return moves.start({
          tenant_database_id: row.id,
          source_server_id: source.id,
          ...(req.target_server_id ? { target_server_id: req.target_server_id } : {}),
          source_major: source.postgres_major,
          moves_per_server: config.movesPerServer,
          strategy: config.strategy,
          requested_by: ctx.actor,
          request_id: ctx.requestId,
        });
      });
      if (!attempt.acquired) throw new ConflictError('this allocation is being rotated or released; retry');
      const started = attempt.value;
      switch (started.kind) {
        case 'duplicate':
          throw new ConflictError('a move of this allocation is already under way');
        case 'no-target':
          throw new ConflictError('no active shared pool with room can take this tenant');
        case 'no-room':
          throw new ConflictError('the target has no room or is not placeable');
        case 'busy':
          throw new ConflictError(
            `server ${started.server_id} already takes part in ${config.movesPerServer} moves (TENANTDB_MOVES_PER_SERVER)`,
          );
      }
      try {
        await queues.enqueue('move-tenant', { move_id: started.move.id });
      } catch (err) {
        // Nothing was done on a server yet: the move is ended and its slot freed, then 503.
        await moves.finish(started.move.id, ['pending'], 'cancelled', 'the job queue was unavailable');
        throw err;
      }
      return view(started.move);
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

// Beginning a tenant move, the one place both callers go through: database-service's
// POST …/moves (an operator) and database-worker's drain-server (a drain). It checks the request
// against the catalog, records the move with its target slot taken (MovesRepo.start) under the
// allocation's rotation lock (so it never meets a rotation or the start of a release), and hands
// the move to its worker job through `enqueue`. Every refusal is a typed result, nothing written:
// the API answers it as a 4xx, the drain waits or lists it as blocked.
import type { CatalogDb } from './db';
import { LOCK_KEYS, trySessionLock } from './locks';
import type { MovesRepo } from './repos/moves.repo';
import type { PlacementStrategy } from './repos/reservations.repo';
import type { ServersRepo } from './repos/servers.repo';
import type { TenantDatabasesRepo } from './repos/tenant-databases.repo';
import { type DbServer, PLACEABLE_HEALTH, type TenantDatabase, type TenantMove } from './types';

export interface BeginMoveDeps {
  db: CatalogDb;
  moves: Pick<MovesRepo, 'start' | 'finish'>;
  servers: Pick<ServersRepo, 'findById'>;
  tenants: Pick<TenantDatabasesRepo, 'findById'>;
  /** Queues move-tenant for the move (the caller's queues); a throw ends the move, nothing done. */
  enqueue: (moveId: string) => Promise<unknown>;
  config: { movesPerServer: number; strategy: PlacementStrategy };
}

/**
 * Why a move was not begun. `not-movable`: the tenant cannot move as it is (not ready); `target`: the named target cannot take it (missing, the same server, refused: see
 * the message); `transient`: try again soon (a rotation or release holds the allocation, it changed
 * meanwhile, a rotation is not settled); then MovesRepo.start's own refusals.
 */
export type MoveRefusal =
  | { kind: 'not-movable'; message: string }
  | { kind: 'source-missing'; message: string }
  | { kind: 'target-missing'; message: string }
  | { kind: 'same-server'; message: string }
  | { kind: 'target-refused'; message: string }
  | { kind: 'transient'; message: string }
  | { kind: 'duplicate'; message: string }
  | { kind: 'no-target'; message: string }
  | { kind: 'no-room'; message: string }
  | { kind: 'busy'; server_id: string; message: string };

export type BeginMove = { kind: 'started'; move: TenantMove } | MoveRefusal;

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

/**
 * What keeps a tenant from moving as it is; undefined when nothing does. A suspended or restricted
 * tenant moves: the cut-over opens its role on the target as the catalog says (move-steps.ts,
 * openTarget), so it stays NOLOGIN or restricted there.
 */
export function tenantRefusal(row: TenantDatabase): string | undefined {
  if (row.status !== 'ready') return `the allocation is ${row.status}`;
  return undefined;
}

export async function beginMove(
  deps: BeginMoveDeps,
  req: {
    tenant: TenantDatabase;
    /** Undefined: anywhere with room, by the placement rules of shared pools. */
    target_server_id?: string | undefined;
    /** A plan change: the plan the cut-over writes onto the tenant row. */
    plan_tier?: string;
    /**
     * The named target is the instance's dedicated server, still being provisioned: the move waits
     * for it in awaiting_target (MovesRepo.start), so only whose server it is is checked now.
     */
    await_target?: boolean;
    requested_by: string;
    request_id: string | null;
  },
): Promise<BeginMove> {
  const { db, moves, servers, tenants, config } = deps;
  const row = req.tenant;
  const refusal = tenantRefusal(row);
  if (refusal) return { kind: 'not-movable', message: refusal };
  const source = await servers.findById(row.db_server_id);
  if (!source)
    return { kind: 'source-missing', message: 'the server of this allocation is missing from the catalog' };
  if (req.target_server_id) {
    const target = await servers.findById(req.target_server_id);
    if (!target) return { kind: 'target-missing', message: 'no server with this target_server_id' };
    if (target.id === source.id)
      return { kind: 'same-server', message: 'the tenant is already on this server' };
    const refused = req.await_target
      ? target.dedicated_to_customer_id !== row.customer_id
        ? 'the target is dedicated to another customer'
        : undefined
      : targetRefusal(target, source, row);
    if (refused) return { kind: 'target-refused', message: refused };
  }
  const attempt = await trySessionLock(db, LOCK_KEYS.rotation(row.id), async (): Promise<BeginMove> => {
    const current = await tenants.findById(row.id);
    if (current?.status !== 'ready' || current.db_server_id !== source.id)
      return { kind: 'transient', message: 'the allocation changed; retry' };
    if (current.password_pending_enc)
      return {
        kind: 'transient',
        message: 'a password rotation of this allocation is not settled yet; retry later',
      };
    const started = await moves.start({
      tenant_database_id: row.id,
      source_server_id: source.id,
      ...(req.target_server_id ? { target_server_id: req.target_server_id } : {}),
      ...(req.plan_tier ? { plan_tier: req.plan_tier } : {}),
      ...(req.await_target ? { await_target: true } : {}),
      source_major: source.postgres_major,
      moves_per_server: config.movesPerServer,
      strategy: config.strategy,
      requested_by: req.requested_by,
      request_id: req.request_id,
    });
    switch (started.kind) {
      case 'started':
        return started;
      case 'duplicate':
        return { kind: 'duplicate', message: 'a move of this allocation is already under way' };
      case 'no-target':
        return { kind: 'no-target', message: 'no active shared pool with room can take this tenant' };
      case 'no-room':
        return { kind: 'no-room', message: 'the target has no room or is not placeable' };
      case 'busy':
        return {
          kind: 'busy',
          server_id: started.server_id,
          message: `server ${started.server_id} already takes part in ${config.movesPerServer} moves (TENANTDB_MOVES_PER_SERVER)`,
        };
    }
  });
  if (!attempt.acquired)
    return { kind: 'transient', message: 'this allocation is being rotated or released; retry' };
  const started = attempt.value;
  if (started.kind !== 'started') return started;
  try {
    await deps.enqueue(started.move.id);
  } catch (err) {
    // Nothing was done on a server yet: the move is ended and its slot freed, then the error.
    await moves.finish(started.move.id, [started.move.phase], 'cancelled', 'the job queue was unavailable');
    throw err;
  }
  return started;
}

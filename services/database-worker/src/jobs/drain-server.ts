// drain-server: one step of a server's drain (issue 15), then the same job again, delayed, until
// the server is empty (drained) or no longer draining (uncordon stopped it). The server row is the
// truth and every step starts from what the catalog says now, so a step repeats safely (a job is
// delivered at least once, a worker may die anywhere) and reconcile re-enqueues a drain whose job
// is lost. A step:
//   - drops the server's warm (unclaimed) databases: nobody holds them, they are not moved;
//   - begins a move "anywhere with room" (beginMove, the API's own path) for every ready tenant
//     not already moving, until the server, or every target, is at TENANTDB_MOVES_PER_SERVER
//     (the next step goes on) or no pool has room (blocked: waits, never over-commits: every
//     target slot is taken by MovesRepo.start under its CHECK);
//   - a tenant whose moves failed TENANTDB_DRAIN_MOVE_ATTEMPTS times is listed as blocked with the
//     last error, and the server is not drained while it is there (a suspended or restricted
//     tenant moves like any other and stays so on the target: move-steps.ts, openTarget);
//   - records what blocks it (the pool's detail shows it); ends the drain when nothing is left.
import {
  beginMove,
  type DbServer,
  type DrainBlock,
  LOCK_KEYS,
  tenantRefusal,
  trySessionLock,
} from '@tenantdb/catalog';
import { RetryLater } from '@tenantdb/jobs';
import { PoolServerUnavailableError } from '@tenantdb/pool-server';
import type { JobContext, WorkerDeps } from '../context';

const ACTOR = 'database-worker (drain)';

export function drainServer(deps: WorkerDeps) {
  const { db, servers, tenants, moves, drains, tenantOps, queues, config, metrics } = deps;

  /** Warm databases go: dropped on the server, then their rows. Under the refill's lock, or later. */
  async function dropWarm(server: DbServer, log: JobContext['log']): Promise<number> {
    const attempt = await trySessionLock(db, LOCK_KEYS.warmRefill(server.id), async () => {
      let dropped = 0;
      for (const row of await drains.warmOn(server.id)) {
        // Drop first: a crash in between leaves the row, and the next step drops again (idempotent).
        await tenantOps.drop(server, { dbName: row.db_name, dbUser: row.db_user });
        await drains.forgetWarm(row.id);
        dropped++;
      }
      return dropped;
    });
    if (!attempt.acquired) log.info({ db_server_id: server.id }, 'a warm refill holds the server; next step');
    return attempt.acquired ? attempt.value : 0;
  }

  /** Begins the moves this step may begin; returns what blocks tenants or the whole drain. */
  async function moveTenants(server: DbServer, log: JobContext['log']): Promise<DrainBlock[]> {
    const blocked: DrainBlock[] = [];
    const block = (t: { id: string; instance_id: string | null } | null, reason: string) =>
      blocked.push({ tenant_database_id: t?.id ?? null, instance_id: t?.instance_id ?? null, reason });
    let starting = true;
    for (const { tenant, active_move_id, failures, last_error } of await drains.tenantsOn(server)) {
      if (active_move_id) continue; // under way; its job carries it
      if (tenant.status !== 'ready') continue; // creating or releasing: settles by itself
      const refusal = tenantRefusal(tenant);
      if (refusal) {
        block(tenant, refusal);
        continue;
      }
      if (failures >= config.TENANTDB_DRAIN_MOVE_ATTEMPTS) {
        block(
          tenant,
          `its move failed ${failures} times (TENANTDB_DRAIN_MOVE_ATTEMPTS): ${last_error ?? 'no reason recorded'}`,
        );
        continue;
      }
      if (!starting) continue;
      const begun = await beginMove(
        {
          db,
          moves,
          servers,
          tenants,
          enqueue: (moveId) => queues.enqueue('move-tenant', { move_id: moveId }),
          config: {
            movesPerServer: config.TENANTDB_MOVES_PER_SERVER,
            strategy: config.TENANTDB_PLACEMENT_STRATEGY,
          },
        },
        { tenant, requested_by: ACTOR, request_id: null },
      );
      switch (begun.kind) {
        case 'started':
          log.info(
            {
              move_id: begun.move.id,
              tenant_database_id: tenant.id,
              target_server_id: begun.move.target_server_id,
            },
            'drain: move begun',
          );
          break;
        case 'busy':
        case 'transient':
        case 'duplicate':
          // The server's bound of moves is reached (or this tenant is busy): the next step goes on.
          if (begun.kind === 'busy') starting = false;
          break;
        case 'no-target':
          // Every pool with room may only be at its bound of moves (the next step goes on); with
          // none, the drain waits for room (a new pool, a release elsewhere): never over-committed.
          if (!(await servers.hasPlaceableRoom([server.id])))
            block(null, 'no pool with room: no active shared pool can take a tenant now');
          starting = false;
          break;
        default:
          block(tenant, begun.message);
      }
    }
    return blocked;
  }

  return async ({ server_id }: { server_id: string }, { log }: JobContext) => {
    const server = await servers.findById(server_id);
    if (!server) return 'the server is gone';
    if (server.status === 'drained') return 'drained';
    if (server.status !== 'draining') {
      // Uncordoned (or taken over by decommission, error): the drain stops; moves begun finish.
      metrics.drainEnded('stopped');
      log.info({ db_server_id: server_id, status: server.status }, 'drain stopped');
      return `stopped: the server is ${server.status}`;
    }
    try {
      await dropWarm(server, log);
    } catch (err) {
      // An unreachable server: its tenants can still be moved if it comes back; try next step.
      if (!(err instanceof PoolServerUnavailableError)) throw err;
      log.warn({ db_server_id: server_id }, 'drain: warm databases not dropped, the server is unreachable');
    }
    const blocked = await moveTenants(server, log);
    const figures = await drains.figures(server);
    if (figures.tenants_left === 0 && figures.warm_left === 0 && figures.moves_running === 0) {
      const drained = await drains.finish(server_id);
      if (drained) {
        metrics.drainEnded('drained');
        log.info({ db_server_id: server_id }, 'drained');
        return 'drained';
      }
      const now = await servers.findById(server_id);
      if (now && now.current_instances > 0)
        blocked.push({
          tenant_database_id: null,
          instance_id: null,
          reason: `current_instances is ${now.current_instances} with no tenant left (slot drift: see tenantdb_catalog_drift)`,
        });
    }
    if (!(await drains.record(server_id, blocked))) return 'the server left draining during the step';
    throw new RetryLater(
      config.TENANTDB_DRAIN_STEP_MS,
      `draining: ${figures.tenants_left} tenants left, ${figures.moves_running} moves running, ${blocked.length} blocked`,
    );
  };
}

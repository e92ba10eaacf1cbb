// move-tenant: advances one tenant move (tenant_moves) phase by phase, design §11 and issue 15.
//   awaiting_target (a plan change to a dedicated server being provisioned): no slot held until
//     the server is active (move-plan-change.ts), then → pending; a server that failed: failed
//   pending → copying_schema: the role (same name and SCRAM verifier, NOLOGIN) and database on the
//     target; the method (logical, or dump when a table has no key or a server has no logical
//     WAL); logical: schema before the data (pre-data, primary keys); dump: writes blocked on the
//     source and the whole database by pg_dump | pg_restore
//   syncing (logical): publication + subscription, initial copy, catch-up; then indexes and
//     constraints (post-data)
//   cutting_over: writes blocked on the source (role NOLOGIN, its sessions ended), the target has
//     the source's LSN, sequences copied, the catalog row switched to the target in one
//     transaction (the move's slot becomes the source's), the target role opened
//   cleaning_up: subscription, publication, slots and replication role dropped; instance-service
//     told the new address (and a plan change's plan set on the target role)
//   grace: the source database stays, closed, for TENANTDB_MOVE_GRACE_MS (the job waits delayed)
//   dropping_source: dropped, its slot freed → done (a plan change's emptied dedicated server retired)
//   cancelling / failing (before the cut-over only): everything on the target undone, the
//     target slot freed, the source open again → cancelled / failed
// Each phase repeats safely (a job is delivered at least once; a worker may die anywhere): the
// record's phase says where to resume, every transition is conditional on the phase it leaves,
// and one worker at a time holds the move (a session lock that goes with a dead worker).
import {
  CANCELLABLE_MOVE_PHASES,
  LOCK_KEYS,
  type MovePhase,
  type TenantMove,
  trySessionLock,
} from '@tenantdb/catalog';
import { PermanentJobError, RetryLater } from '@tenantdb/jobs';
import { describePgError, moveObjectName } from '@tenantdb/pool-server';
import type { JobContext, WorkerDeps } from '../../context';
import { createPlanChangeSteps } from './move-plan-change';
import { createMoveSteps, type MoveParts } from './move-steps';

/** How often a move waiting for its copy records progress (its heartbeat) and looks for a cancel. */
const PROGRESS_MS = 1_000;
/** Lag under which the copy counts as caught up and the cut-over may start. */
const CAUGHT_UP_BYTES = 1024 * 1024;

/** The move left the phase this run was in (cancelled, or another worker moved it): stop. */
class Superseded extends Error {}

export function moveTenant(deps: WorkerDeps) {
  const { db, moves, servers, tenants, plans, config, metrics } = deps;
  const steps = createMoveSteps(deps);
  const planChange = createPlanChangeSteps(deps);

  async function partsOf(move: TenantMove): Promise<MoveParts> {
    const [tenant, source, target, plan] = await Promise.all([
      tenants.findById(move.tenant_database_id),
      servers.findById(move.source_server_id),
      servers.findById(move.target_server_id),
      move.plan_tier ? plans.find(move.plan_tier) : undefined,
    ]);
    if (!tenant || !source || !target) throw new PermanentJobError('the move names a row that is gone');
    return {
      move,
      tenant,
      source,
      target,
      names: { dbName: tenant.db_name, dbUser: tenant.db_user },
      object: moveObjectName(move.id),
      ...(plan ? { plan } : {}),
    };
  }

  /** Moves the record on; a move no longer in `from` was taken over (cancel): Superseded. */
  async function advance(
    move: TenantMove,
    from: MovePhase,
    to: MovePhase,
    patch: Parameters<typeof moves.advance>[3] = {},
  ) {
    const next = await moves.advance(move.id, [from], to, patch);
    if (!next) throw new Superseded();
    metrics.movePhase(to);
    await deps.audit.record({
      actor: 'database-worker',
      action: `move.${to}`,
      db_server_id: move.target_server_id,
      tenant_database_id: move.tenant_database_id,
      details: { move_id: move.id, from },
    });
    return next;
  }

  /** Undo before the cut-over: the target emptied, the source open again, the target slot freed. */
  async function undo(p: MoveParts, to: 'cancelled' | 'failed', log: JobContext['log']) {
    const from = to === 'cancelled' ? 'cancelling' : 'failing';
    const tenant = await tenants.findById(p.tenant.id);
    // Never drop the copy that serves the tenant: undo is for moves that have not cut over.
    if (tenant?.db_server_id === p.target.id)
      throw new Error('the tenant is served from the target; not undoing');
    // A move that never took its target slot (awaiting_target) made nothing on either server and
    // never blocked the source (a suspension meanwhile must stay).
    if (p.move.slot_server_id !== null) {
      await steps.dropReplication(p);
      await steps.undoTarget(p);
      await steps.allowSourceLogins(p).catch((err) => {
        // A tenant released meanwhile has no role to open; anything else is retried.
        if ((err as { code?: string }).code !== '42704') throw err;
      });
    }
    const ended = await moves.finish(p.move.id, [from], to, p.move.error);
    if (ended) {
      metrics.moveFinished(to);
      log.warn({ move_id: p.move.id, error: p.move.error }, `move ${to}`);
      await planChange.finished(ended, log);
    }
    return ended?.phase ?? 'gone';
  }

  async function syncing(p: MoveParts, log: JobContext['log']): Promise<TenantMove> {
    await steps.startReplication(p);
    const deadline = Date.now() + config.TENANTDB_MOVE_SYNC_TIMEOUT_MS;
    let copied = p.move.bytes_copied ?? 0;
    for (;;) {
      const state = await steps.syncState(p);
      if (!state.slotPresent)
        throw new PermanentJobError(
          'the replication slot on the source is gone or lost (max_slot_wal_keep_size)',
        );
      const stillHere = await moves.progress(p.move.id, 'syncing', {
        tables_total: state.tablesTotal,
        tables_synced: state.tablesReady,
        bytes_total: state.bytesTotal,
        bytes_copied: state.bytesCopied,
        lag_bytes: state.lagBytes,
      });
      if (!stillHere) throw new Superseded();
      metrics.moveLag(state.lagBytes ?? 0);
      if (state.bytesCopied > copied) metrics.moveBytes(state.bytesCopied - copied);
      copied = Math.max(copied, state.bytesCopied);
      if (state.tablesReady === state.tablesTotal && (state.lagBytes ?? 0) <= CAUGHT_UP_BYTES) break;
      if (Date.now() > deadline)
        throw new PermanentJobError('the copy did not catch up within TENANTDB_MOVE_SYNC_TIMEOUT_MS');
      await new Promise((r) => setTimeout(r, PROGRESS_MS));
    }
    log.info({ move_id: p.move.id }, 'initial copy done; building indexes');
    await steps.copyPostData(p);
    return advance(p.move, 'syncing', 'cutting_over');
  }

  async function cutOver(p: MoveParts, log: JobContext['log']): Promise<TenantMove> {
    const blockedAt = performance.now();
    await steps.blockWrites(p);
    if (p.move.method === 'logical') {
      try {
        await steps.waitCaughtUp(p, config.TENANTDB_MOVE_CUTOVER_TIMEOUT_MS);
      } catch (err) {
        // Writes must not stay blocked while this is retried: open the source again first.
        await steps.allowSourceLogins(p);
        throw err;
      }
      await steps.copySequences(p);
    }
    const blockedMs =
      Math.round(performance.now() - blockedAt) +
      (p.move.method === 'dump' ? (p.move.write_blocked_ms ?? 0) : 0);
    if (!(await moves.cutOver(p.move, blockedMs))) throw new Superseded();
    metrics.movePhase('cleaning_up');
    await steps.openTarget(p);
    metrics.moveWriteBlocked(blockedMs / 1000);
    log.info({ move_id: p.move.id, write_blocked_ms: blockedMs }, 'cut over');
    return (await moves.findById(p.move.id))!;
  }

  /** One phase of the move; returns the record after it, or a phase name when it stopped. */
  async function step(move: TenantMove, log: JobContext['log']): Promise<TenantMove | string> {
    const p = await partsOf(move);
    switch (move.phase) {
      case 'awaiting_target':
        return planChange.awaitTarget(p);
      case 'pending':
        return advance(move, 'pending', 'copying_schema');
      case 'copying_schema': {
        const { method, reason } = await steps.chooseMethod(p);
        if (!(await moves.progress(move.id, 'copying_schema', { method, method_reason: reason })))
          throw new Superseded();
        await steps.prepareTarget(p);
        if (method === 'logical') {
          await steps.copyPreData(p);
          return advance(move, 'copying_schema', 'syncing');
        }
        // Dump: writes stay blocked from here to the cut-over (cutting_over blocks again, harmlessly);
        // a copy that fails opens the source again before it is retried or undone.
        const dumpStarted = performance.now();
        await steps.blockWrites(p);
        let bytes: number;
        try {
          bytes = await steps.dumpAll(p);
        } catch (err) {
          await steps.allowSourceLogins(p).catch(() => {});
          throw err;
        }
        metrics.moveBytes(bytes);
        return advance(move, 'copying_schema', 'cutting_over', {
          bytes_copied: bytes,
          bytes_total: bytes,
          // Blocked for the whole copy: the cut-over adds its own part.
          write_blocked_ms: Math.round(performance.now() - dumpStarted),
        });
      }
      case 'syncing':
        return syncing(p, log);
      case 'cutting_over':
        return cutOver(p, log);
      case 'cleaning_up':
        await steps.openTarget(p);
        await steps.blockWrites(p); // sessions that reached the source before the switch end now
        await steps.dropReplication(p);
        await planChange.afterCutOver(p);
        return advance(move, 'cleaning_up', 'grace', {
          drop_source_after: new Date(Date.now() + config.TENANTDB_MOVE_GRACE_MS),
        });
      case 'grace': {
        const left = (move.drop_source_after?.getTime() ?? 0) - Date.now();
        if (left > 0) throw new RetryLater(left, 'the source database is kept for its grace period');
        return advance(move, 'grace', 'dropping_source');
      }
      case 'dropping_source': {
        const tenant = await tenants.findById(move.tenant_database_id);
        if (tenant?.db_server_id === move.source_server_id)
          throw new Error('the tenant is still on the source');
        await steps.dropSource(p);
        const done = await moves.finish(move.id, ['dropping_source'], 'done', null);
        if (done) {
          metrics.moveFinished('done');
          await planChange.finished(done, log);
        }
        return 'done';
      }
      case 'cancelling':
        return undo(p, 'cancelled', log);
      case 'failing':
        return undo(p, 'failed', log);
      default:
        // Finished: a repeat after a crash between the end and the retire finishes the retire.
        await planChange.retireEmptied(move, log);
        return move.phase;
    }
  }

  async function drive(moveId: string, log: JobContext['log']): Promise<string> {
    let move = await moves.findById(moveId);
    while (move) {
      let next: TenantMove | string;
      try {
        next = await step(move, log);
      } catch (err) {
        if (err instanceof Superseded) {
          move = await moves.findById(moveId);
          continue;
        }
        if (
          err instanceof PermanentJobError &&
          (CANCELLABLE_MOVE_PHASES as readonly string[]).concat('cutting_over').includes(move.phase)
        ) {
          // Before the cut-over a failure that retrying cannot fix is undone, with its reason.
          log.warn({ move_id: moveId, phase: move.phase, reason: err.message }, 'move failing');
          await moves.advance(moveId, [move.phase], 'failing', { error: err.message });
          move = await moves.findById(moveId);
          continue;
        }
        throw err instanceof PermanentJobError || err instanceof RetryLater
          ? err
          : new Error(describePgError(err));
      }
      if (typeof next === 'string') return next;
      move = next;
    }
    return 'the move is gone';
  }

  return async ({ move_id }: { move_id: string }, { log }: JobContext) => {
    const attempt = await trySessionLock(db, LOCK_KEYS.move(move_id), () => drive(move_id, log));
    return attempt.acquired ? attempt.value : 'another worker is advancing this move';
  };
}

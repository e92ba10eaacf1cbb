// reconcile: compare the catalog with what the orchestrators run and with pg_database on each
// server; report drift, then repair what tenantdb itself made and lost track of:
//   - orchestrator objects labelled by tenantdb whose server row is gone or decommissioned;
//   - tenant databases / roles on a server with no catalog row (names tenantdb generates only);
//   - allocations stuck in creating or releasing past a deadline (a process died mid-way);
//   - warm rows whose database was never made (a refill died mid-way);
//   - rotations a crash left with a pending password (reconcile-rotations.ts);
//   - quota states and suspensions not yet applied on the server, and tenants still in the
//     arrangement before the owner role (reconcile-access.ts);
//   - servers still provisioning with no job (a lost enqueue);
//   - tenant moves no worker has touched for a while (a lost job, a worker killed past its
//     retries), and moves whose grace period is over: their (idempotent) job again. A move's
//     databases on its source and target are known names, never orphans. Restores and running
//     backups alike (a restore's databases are named after it, without the tenant prefix);
//   - draining servers: their drain-server job again (a no-op while it is queued or delayed).
// Unlabelled objects, and databases or roles whose names tenantdb does not generate (with the
// tenant prefix or not), are never touched. One row's or one server's failure is logged and
// counted (the summary's errors) and the pass goes on; the next run tries again.
// It also measures slot drift on every server and stores it for tenantdb_catalog_drift
// (FleetRepo.recordSlotDrift).
import { type DbServer, SERVING_STATUSES, STARTING_STATUSES } from '@tenantdb/catalog';
import {
  listTenantObjects,
  ownerRoleOf,
  PoolServerUnavailableError,
  type TenantNames,
  tenantOf,
} from '@tenantdb/pool-server';
import type { JobContext, WorkerDeps } from '../context';
import { legacyArrangements, pendingAccess, pendingEvents } from './reconcile-access';
import { pendingRotations } from './reconcile-rotations';

/** One pass: its log, and what it could not do (logged where it happened; the next run tries again). */
export interface Pass {
  log: JobContext['log'];
  errors: number;
}

function failed(pass: Pass, fields: Record<string, unknown>, err: unknown, what: string): void {
  pass.errors++;
  pass.log.warn({ ...fields, reason: err instanceof Error ? err.message : String(err) }, what);
}

/** What is left on a server of one tenant the catalog does not account for. */
interface Leftover {
  names: TenantNames;
  database: boolean;
  role: boolean;
}

/**
 * Runs `fn` on every item, `limit` at a time. After a failure no further item is started; the ones
 * under way finish, then the first error is thrown.
 */
async function eachAtMost<T>(
  limit: number,
  items: readonly T[],
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const runner = async () => {
    while (!failure && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, runner));
  if (failure) throw failure.error;
}

/**
 * Orchestrator objects labelled by tenantdb whose server row is gone or decommissioned: removed.
 * When the catalog cannot say which servers exist, nothing is removed (every object would look
 * orphaned): the driver's objects are left for the next run and the failure is counted.
 */
export async function orphanObjects(
  deps: Pick<WorkerDeps, 'drivers' | 'fleet'>,
  pass: Pass,
): Promise<number> {
  const { drivers, fleet } = deps;
  const { log } = pass;
  let removed = 0;
  for (const driver of drivers.values()) {
    let objects: Awaited<ReturnType<typeof driver.list>>;
    try {
      objects = await driver.list();
    } catch (err) {
      failed(pass, { driver: driver.driver }, err, 'could not list the orchestrator objects');
      continue;
    }
    if (objects.length === 0) continue;
    let known: Awaited<ReturnType<typeof fleet.statusesOf>>;
    try {
      known = await fleet.statusesOf(
        objects.map((o) => o.serverId).filter((id) => /^[0-9a-f-]{36}$/.test(id)),
      );
    } catch (err) {
      failed(pass, { driver: driver.driver }, err, 'could not read which servers exist; no object removed');
      continue;
    }
    const live = new Set(known.filter((k) => k.status !== 'decommissioned').map((k) => k.id));
    for (const object of objects) {
      if (live.has(object.serverId)) continue;
      log.warn(
        { driver: driver.driver, ref: object.ref, server_id: object.serverId },
        'removing orphaned server object',
      );
      try {
        await driver.remove(object.ref);
        removed++;
      } catch (err) {
        // One object that cannot go (a namesake that is not ours, an orchestrator hiccup) must
        // not stop the rest of the pass; the next run tries again.
        log.warn(
          { driver: driver.driver, ref: object.ref, reason: (err as Error).message },
          'orphan left in place',
        );
      }
    }
  }
  return removed;
}

export function reconcile(deps: WorkerDeps) {
  const { servers, fleet, tenants, moves, connections, tenantOps, queues, audit, config } = deps;
  const staleBefore = () => new Date(Date.now() - config.TENANTDB_STALE_ALLOCATION_MS);

  /**
   * Databases and roles with the tenant prefix that no catalog row accounts for. Listed on a
   * connection of its own, closed at once: a pass over the fleet leaves no idle connection to
   * every server. Only names tenantdb generates are dropped, each tenant's through tenantOps
   * (the drop lock: a release of it running meanwhile is waited for); anything else with the
   * prefix is reported and left in place.
   */
  async function orphanDatabases(server: DbServer, pass: Pass): Promise<number> {
    const { log } = pass;
    // The server is listed before the catalog is read: every row is written before the SQL
    // that makes its database, so whatever is on the server by now has its row in the catalog.
    const onServer = await listTenantObjects(connections, server);
    const rows = [...(await tenants.listNamesOnServer(server.id)), ...(await moves.namesHeldOn(server.id))];
    const knownDbs = new Set(rows.map((r) => r.db_name));
    // Each tenant has a login role and (tenant-access.sql.ts) an owner role.
    const knownRoles = new Set(rows.flatMap((r) => [r.db_user, ownerRoleOf({ dbName: r.db_name })]));

    const leftovers = new Map<string, Leftover>();
    const unknown = [
      ...onServer.databases.filter((name) => !knownDbs.has(name)),
      ...onServer.roles.filter((name) => !knownRoles.has(name)),
    ];
    for (const name of unknown) {
      const object = tenantOf(name);
      if (!object) {
        log.warn({ db_server_id: server.id, name }, 'not a name tenantdb generates; left in place');
        continue;
      }
      const leftover = leftovers.get(object.names.dbName) ?? {
        names: object.names,
        database: false,
        role: false,
      };
      leftover[object.kind] = true;
      leftovers.set(object.names.dbName, leftover);
    }

    let databasesDropped = 0;
    let rolesDropped = 0;
    for (const { names, database, role } of leftovers.values()) {
      try {
        await tenantOps.dropLeftovers(server, names, { database, role });
        log.warn({ db_server_id: server.id, ...names, database, role }, 'dropped an orphaned tenant');
        if (database) databasesDropped++;
        if (role) rolesDropped++;
      } catch (err) {
        failed(pass, { db_server_id: server.id, ...names, database, role }, err, 'orphan left in place');
      }
    }
    // What is still off after the repair: orphans that could not be dropped or are not ours, or
    // catalog rows whose database is missing (negative).
    const databasesLeft = onServer.databases.length - databasesDropped;
    await servers.update(server.id, { database_drift: databasesLeft - knownDbs.size });
    return databasesDropped + rolesDropped;
  }

  /**
   * Allocations a crashed process left in creating/releasing: finish or undo them, through the
   * same drop (tenantOps, under its lock) and the same transition as a release, so a release of
   * the row that is only slow, not dead, ends cleanly beside this (one of them moves the row).
   */
  async function stuckAllocations(pass: Pass): Promise<number> {
    const { log } = pass;
    const stuck = await tenants.findStuck(staleBefore());
    let repaired = 0;
    for (const row of stuck) {
      try {
        const server = await servers.findById(row.db_server_id);
        if (server?.host) await tenantOps.drop(server, { dbName: row.db_name, dbUser: row.db_user });
        await tenants.leaveSlot(row.id, [row.status], row.status === 'creating' ? 'failed' : 'released', {
          status_reason:
            row.status === 'creating' ? 'interrupted while being created; removed by reconcile' : null,
        });
        log.warn({ tenant_database_id: row.id, was: row.status }, 'repaired a stuck allocation');
        repaired++;
      } catch (err) {
        if (err instanceof PoolServerUnavailableError) continue; // next run
        failed(
          pass,
          { tenant_database_id: row.id, was: row.status },
          err,
          'a stuck allocation was not repaired',
        );
      }
    }
    // A refill that died between its row and its database: the row goes (its database, if any,
    // is then an orphan and dropped by the next pass).
    const half = await tenants.deleteUnmadeWarm(staleBefore());
    return repaired + half;
  }

  return async (_payload: unknown, { log }: JobContext) => {
    const pass: Pass = { log, errors: 0 };
    const objects = await orphanObjects(deps, pass);
    const allocations =
      (await stuckAllocations(pass)) +
      (await pendingRotations(deps, pass)) +
      (await pendingAccess(deps, pass)) +
      (await pendingEvents(deps, pass)) +
      (await legacyArrangements(deps, pass));
    // Before the pass over every server, which is long on a large fleet.
    const slotDrift = await fleet.recordSlotDrift();
    let databases = 0;
    // Drained servers too: what a drain left behind there is found and removed like anywhere.
    const live = await fleet.listInStatuses([...SERVING_STATUSES, 'drained']);
    await eachAtMost(config.TENANTDB_RECONCILE_CONCURRENCY, live, async (server) => {
      try {
        // Awaited apart: `databases += await …` would read the total before the await and lose what
        // the passes running beside this one added meanwhile.
        const dropped = await orphanDatabases(server, pass);
        databases += dropped;
      } catch (err) {
        if (err instanceof PoolServerUnavailableError) return; // next run
        // One server that cannot be compared does not stop the pass over the others.
        failed(pass, { db_server_id: server.id }, err, 'a server was not reconciled');
      }
    });
    // Lost enqueues: provisioning rows get their (idempotent) job again.
    const starting = await fleet.idsInStatuses(STARTING_STATUSES);
    for (const id of starting) await queues.enqueue('provision-server', { server_id: id });

    const resumed = await moves.findStale(staleBefore());
    for (const move of resumed) await queues.enqueue('move-tenant', { move_id: move.id });
    // Backups and restores the same way: their job again (a job still queued or running has the
    // same id, so nothing runs twice); each repeats safely from its record.
    const restoresResumed = await deps.restores.findStale(staleBefore());
    for (const r of restoresResumed) await queues.enqueue('restore-tenant', { restore_id: r.id });
    const backupsResumed = await deps.backups.findStaleRunning(staleBefore());
    for (const b of backupsResumed) await queues.enqueue('backup-tenant', { backup_id: b.id });
    // Drains whose job is lost (a worker killed past its retries): the job again, a no-op while queued.
    const draining = await fleet.idsInStatuses(['draining']);
    for (const id of draining) await queues.enqueue('drain-server', { server_id: id });

    const summary = {
      objects,
      databases,
      allocations,
      moves_resumed: resumed.length,
      restores_resumed: restoresResumed.length,
      backups_resumed: backupsResumed.length,
      drains: draining.length,
      slot_drift: slotDrift,
      errors: pass.errors,
    };
    if (objects + databases + allocations > 0) {
      await audit.record({ actor: 'database-worker', action: 'fleet.reconcile', details: summary });
    }
    log.info(summary, 'reconcile done');
    return summary;
  };
}

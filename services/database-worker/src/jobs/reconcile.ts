// reconcile: compare the catalog with what the orchestrators run and with pg_database on each
// server; report drift, then repair what tenantdb itself made and lost track of:
//   - orchestrator objects labelled by tenantdb whose server row is gone or decommissioned;
//   - tenant databases / roles (tdb_ prefix) on a server with no catalog row;
//   - allocations stuck in creating or releasing past a deadline (a process died mid-way);
//   - warm rows whose database was never made (a refill died mid-way);
//   - servers still provisioning with no job (a lost enqueue).
// Unlabelled objects and databases without the tenantdb prefix are never touched.
// It also measures slot drift on every server and stores it for tenantdb_catalog_drift
// (FleetRepo.recordSlotDrift).
import { type DbServer, SERVING_STATUSES, STARTING_STATUSES } from '@tenantdb/catalog';
import {
  dropTenantStatements,
  PoolServerUnavailableError,
  quoteIdent,
  TENANT_PREFIX,
} from '@tenantdb/pool-server';
import type { JobContext, WorkerDeps } from '../context';

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

export function reconcile(deps: WorkerDeps) {
  const { db, servers, fleet, tenants, connections, queues, drivers, audit, config } = deps;
  const staleBefore = () => new Date(Date.now() - config.TENANTDB_STALE_ALLOCATION_MS);

  async function orphanObjects(log: JobContext['log']): Promise<number> {
    let removed = 0;
    for (const driver of drivers.values()) {
      const objects = await driver.list();
      if (objects.length === 0) continue;
      const known = await fleet
        .statusesOf(objects.map((o) => o.serverId).filter((id) => /^[0-9a-f-]{36}$/.test(id)))
        .catch(() => []);
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

  /**
   * Databases and roles with the tenant prefix that no catalog row accounts for. One connection of
   * its own, closed at the end: a pass over the fleet leaves no idle connection to every server.
   */
  async function orphanDatabases(server: DbServer, log: JobContext['log']): Promise<number> {
    return connections.withOwnClient(server, async (client) => {
      // The server is listed before the catalog is read: every row is written before the SQL
      // that makes its database, so whatever is on the server by now has its row in the catalog.
      const dbsOnServer = (
        await client.query<{ name: string }>(
          'SELECT datname AS name FROM pg_database WHERE starts_with(datname, $1)',
          [TENANT_PREFIX],
        )
      ).rows.map((r) => r.name);
      const rolesOnServer = (
        await client.query<{ name: string }>(
          'SELECT rolname AS name FROM pg_roles WHERE starts_with(rolname, $1)',
          [TENANT_PREFIX],
        )
      ).rows.map((r) => r.name);
      const rows = await tenants.listNamesOnServer(server.id);
      const knownDbs = new Set(rows.map((r) => r.db_name));
      const knownRoles = new Set(rows.map((r) => r.db_user));

      let dropped = 0;
      const drop = async (kind: 'DATABASE' | 'ROLE', name: string) => {
        try {
          const statement =
            kind === 'DATABASE'
              ? `DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`
              : `DROP ROLE IF EXISTS ${quoteIdent(name)}`;
          await client.query(statement);
          log.warn({ db_server_id: server.id, kind, name }, 'dropped an orphaned tenant object');
          dropped++;
        } catch (err) {
          // Not a name tenantdb generates, or still in use elsewhere: report, leave it.
          log.warn(
            { db_server_id: server.id, kind, name, reason: (err as Error).message },
            'orphan left in place',
          );
        }
      };
      for (const name of dbsOnServer) if (!knownDbs.has(name)) await drop('DATABASE', name);
      const databasesLeft = dbsOnServer.length - dropped;
      for (const name of rolesOnServer) if (!knownRoles.has(name)) await drop('ROLE', name);
      // What is still off after the repair: orphans that could not be dropped, or catalog rows
      // whose database is missing (negative).
      await servers.update(server.id, { database_drift: databasesLeft - knownDbs.size });
      return dropped;
    });
  }

  /** Allocations a crashed process left in creating/releasing: finish or undo them. */
  async function stuckAllocations(log: JobContext['log']): Promise<number> {
    const stuck = await tenants.findStuck(staleBefore());
    let repaired = 0;
    for (const row of stuck) {
      const server = await servers.findById(row.db_server_id);
      try {
        if (server?.host) {
          await connections.withClient(server, async (client) => {
            for (const statement of dropTenantStatements({ dbName: row.db_name, dbUser: row.db_user })) {
              await client.query(statement);
            }
          });
        }
      } catch (err) {
        if (err instanceof PoolServerUnavailableError) continue; // next run
        throw err;
      }
      await db.transaction().execute(async (trx) => {
        const to = row.status === 'creating' ? 'failed' : 'released';
        const moved = await tenants.transition(
          row.id,
          [row.status],
          to,
          {
            status_reason:
              row.status === 'creating' ? 'interrupted while being created; removed by reconcile' : null,
            ...(to === 'released' ? { released_at: 'now' as const } : {}),
          },
          trx,
        );
        if (moved) await servers.releaseSlot(row.db_server_id, trx);
      });
      log.warn({ tenant_database_id: row.id, was: row.status }, 'repaired a stuck allocation');
      repaired++;
    }
    // A refill that died between its row and its database: the row goes (its database, if any,
    // is then an orphan and dropped by the next pass).
    const half = await tenants.deleteUnmadeWarm(staleBefore());
    return repaired + half;
  }

  return async (_payload: unknown, { log }: JobContext) => {
    const objects = await orphanObjects(log);
    const allocations = await stuckAllocations(log);
    // Before the pass over every server, which is long on a large fleet and may stop half way.
    const slotDrift = await fleet.recordSlotDrift();
    let databases = 0;
    const live = await fleet.listInStatuses(SERVING_STATUSES);
    await eachAtMost(config.TENANTDB_RECONCILE_CONCURRENCY, live, async (server) => {
      try {
        // Awaited apart: `databases += await …` would read the total before the await and lose what
        // the passes running beside this one added meanwhile.
        const dropped = await orphanDatabases(server, log);
        databases += dropped;
      } catch (err) {
        if (!(err instanceof PoolServerUnavailableError)) throw err;
      }
    });
    // Lost enqueues: provisioning rows get their (idempotent) job again.
    const starting = await fleet.idsInStatuses(STARTING_STATUSES);
    for (const id of starting) await queues.enqueue('provision-server', { server_id: id });

    const summary = {
      objects,
      databases,
      allocations,
      slot_drift: slotDrift,
    };
    if (objects + databases + allocations > 0) {
      await audit.record({ actor: 'database-worker', action: 'fleet.reconcile', details: summary });
    }
    log.info(summary, 'reconcile done');
    return summary;
  };
}

// refill-warm-databases: keep N pre-created databases on each active shared pool, so allocate
// only has to claim one (ALTER ROLE … PASSWORD, ~2 ms) instead of creating it (~55 ms).
// The catalog row is written first (ready_at NULL: not claimable), then the database, then
// ready_at: reconcile therefore never mistakes a database being warmed for an orphan.
import { randomUUID } from 'node:crypto';
import { type DbServer, LOCK_KEYS, trySessionLock } from '@tenantdb/catalog';
import { generateTenantNames, PoolServerUnavailableError } from '@tenantdb/pool-server';
import { generatePassword } from '@tenantdb/secrets';
import type { JobContext, WorkerDeps } from '../context';

export function refillWarmDatabases(deps: WorkerDeps) {
  const { db, servers, fleet, tenants, secrets, tenantOps, config } = deps;

  /**
   * One refill per pool at a time, whichever replica and job runs it: the sweep and a per-pool
   * refill may overlap, and each would otherwise make the whole shortfall (seen: 74 warm
   * databases on a pool configured for 25). The lock is held on a catalog session for as long as
   * the refill runs and goes with the session if the worker dies; a refill that finds it taken
   * skips the pool, since the one holding it is making what is missing.
   */
  async function refillAlone(server: DbServer, log: JobContext['log']): Promise<number> {
    const attempt = await trySessionLock(db, LOCK_KEYS.warmRefill(server.id), () => refill(server, log));
    return attempt.acquired ? attempt.value : 0;
  }

  async function refill(server: DbServer, log: JobContext['log']): Promise<number> {
    const warm = await tenants.countOnServer(server.id, ['warm']);
    // Warm databases live beside the tenants; they do not take slots, but a full pool needs none.
    const room = server.max_instances - server.current_instances;
    const missing = Math.min(config.TENANTDB_WARM_DATABASES - warm, room);
    let made = 0;
    for (let i = 0; i < missing; i++) {
      const names = generateTenantNames();
      const password = generatePassword();
      const id = randomUUID(); // chosen here: the password is encrypted for its row
      const row = await tenants.insertWarm({
        id,
        db_server_id: server.id,
        db_name: names.dbName,
        db_user: names.dbUser,
        password_enc: secrets.encrypt(password, id),
      });
      try {
        await tenantOps.createWarm(server, { ...names, password });
      } catch (err) {
        await tenants.delete(row.id);
        if (err instanceof PoolServerUnavailableError) {
          log.warn({ db_server_id: server.id }, 'pool unreachable; warm refill skipped');
          return made;
        }
        throw err;
      }
      await tenants.markWarmReady(row.id);
      made++;
    }
    return made;
  }

  return async ({ server_id }: { server_id?: string }, { log }: JobContext) => {
    const targets = server_id
      ? [await servers.findById(server_id)].filter((s): s is DbServer => s !== undefined)
      : await fleet.listActiveShared();
    let made = 0;
    for (const server of targets) {
      if (
        server.server_type !== 'shared' ||
        server.status !== 'active' ||
        server.health_status === 'unhealthy'
      )
        continue;
      made += await refillAlone(server, log);
    }
    return { made };
  };
}

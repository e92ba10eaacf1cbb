// reconcile's repair of rotations a crash left half done. A rotation stores its new password as
// pending, then sets it on the pool server, then promotes it; a row still holding a pending
// password (its rotation lock free: no rotation runs) is settled to a password that logs in:
//   - the pending one logs in: the server got it, promote it;
//   - else the current one does: the server never got it, forget it;
//   - else (neither): set the role's password to the pending one, then promote it.
import { LOCK_KEYS, type TenantDatabase, trySessionLock } from '@tenantdb/catalog';
import { PoolServerUnavailableError, tenantLogsIn } from '@tenantdb/pool-server';
import type { WorkerDeps } from '../context';
import type { Pass } from './reconcile';

type Deps = Pick<WorkerDeps, 'db' | 'servers' | 'tenants' | 'secrets' | 'tenantOps' | 'tls'>;

/** Settles one row; which way it went, or undefined when another rotation holds it or it changed. */
export async function settleRotation(
  deps: Deps,
  row: TenantDatabase,
): Promise<'promoted' | 'dropped' | 'reapplied' | undefined> {
  const { db, servers, tenants, secrets, tenantOps, tls } = deps;
  const attempt = await trySessionLock(db, LOCK_KEYS.rotation(row.id), async (conn) => {
    const now = row.instance_id ? await tenants.findLiveByInstance(row.instance_id, conn) : undefined;
    const pendingEnc = now?.password_pending_enc;
    if (now?.id !== row.id || now.status !== 'ready' || !pendingEnc) return undefined;
    const server = await servers.findById(now.db_server_id);
    if (!server) return undefined;
    const tenant = { dbName: now.db_name, dbUser: now.db_user };
    // Tenants log in over TLS where the server has a fleet certificate (hostssl only there).
    const login = { caPem: (await tls.serverTrust(server.id))?.ca_pem };
    const pending = secrets.decrypt(pendingEnc, now.id);
    if (await tenantLogsIn(server, tenant, pending, login)) {
      return (await tenants.settlePendingPassword(now.id, pendingEnc, 'promote', conn))
        ? 'promoted'
        : undefined;
    }
    if (await tenantLogsIn(server, tenant, secrets.decrypt(now.password_enc, now.id), login)) {
      return (await tenants.settlePendingPassword(now.id, pendingEnc, 'drop', conn)) ? 'dropped' : undefined;
    }
    await tenantOps.setPassword(server, now.db_user, pending);
    return (await tenants.settlePendingPassword(now.id, pendingEnc, 'promote', conn))
      ? 'reapplied'
      : undefined;
  });
  return attempt.acquired ? attempt.value : undefined;
}

/** Every row a crashed rotation left with a pending password, settled; how many were. */
export async function pendingRotations(deps: Deps, pass: Pass): Promise<number> {
  let settled = 0;
  for (const row of await deps.tenants.findPendingPasswords(new Date())) {
    try {
      const outcome = await settleRotation(deps, row);
      if (!outcome) continue;
      pass.log.warn({ tenant_database_id: row.id, outcome }, 'settled a rotation left half done');
      settled++;
    } catch (err) {
      if (err instanceof PoolServerUnavailableError) continue; // next run
      pass.errors++;
      pass.log.warn(
        { tenant_database_id: row.id, reason: err instanceof Error ? err.message : String(err) },
        'a rotation left half done was not settled',
      );
    }
  }
  return settled;
}

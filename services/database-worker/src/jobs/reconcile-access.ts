// reconcile's repair of tenant access: rows whose quota state or suspension the catalog changed
// but whose server was not (yet) brought in line (access_pending past TENANTDB_ACCESS_REPAIR_AFTER_MS:
// the process died between the commit and the server, or the server was away) are applied again;
// and tenants still in the arrangement before the owner role are migrated, a batch per pass.
import { PoolServerUnavailableError } from '@tenantdb/pool-server';
import { syncTenantAccess, type WorkerDeps } from '../context';
import type { Pass } from './reconcile';

type Deps = Pick<WorkerDeps, 'servers' | 'usage' | 'tenantAccess' | 'queues' | 'config'>;

export async function pendingAccess(deps: Deps, pass: Pass): Promise<number> {
  const before = new Date(Date.now() - deps.config.TENANTDB_ACCESS_REPAIR_AFTER_MS);
  const rows = await deps.usage.findAccessPending(before, 500);
  let repaired = 0;
  for (const row of rows) {
    try {
      const result = await syncTenantAccess(deps, row);
      pass.log.warn(
        {
          tenant_database_id: row.id,
          quota_state: row.quota_state,
          suspended: row.suspended_at !== null,
          result,
        },
        'applied a pending access change',
      );
      repaired++;
    } catch (err) {
      if (err instanceof PoolServerUnavailableError) continue; // next run
      pass.errors++;
      pass.log.warn(
        { tenant_database_id: row.id, reason: (err as Error).message },
        'a pending access change was not applied',
      );
    }
  }
  return repaired;
}

export async function legacyArrangements(deps: Deps, pass: Pass): Promise<number> {
  const batch = deps.config.TENANTDB_ACCESS_MIGRATION_BATCH;
  if (batch === 0) return 0;
  const rows = await deps.usage.findLegacyArrangement(batch);
  let migrated = 0;
  for (const row of rows) {
    try {
      const server = await deps.servers.findById(row.db_server_id);
      if (!server?.host) continue;
      const outcome = await deps.tenantAccess.migrate(server, { dbName: row.db_name, dbUser: row.db_user });
      if (outcome !== 'gone') await deps.usage.markArrangement(row.id);
      if (outcome === 'migrated') migrated++;
    } catch (err) {
      if (err instanceof PoolServerUnavailableError) continue;
      pass.errors++;
      pass.log.warn(
        { tenant_database_id: row.id, reason: (err as Error).message },
        'a tenant was not migrated to the owner role',
      );
    }
  }
  if (migrated > 0) pass.log.info({ migrated }, 'tenants migrated to the owner-role arrangement');
  return migrated;
}

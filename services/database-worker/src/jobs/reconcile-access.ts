// reconcile's repair of tenant access: rows whose quota state or suspension the catalog changed
// but whose server was not (yet) brought in line (access_pending past TENANTDB_ACCESS_REPAIR_AFTER_MS:
// the process died between the commit and the server, or the server was away) are applied again;
// and tenants still in the arrangement before the owner role are migrated, a batch per pass.
// Events to the portal that a crash (or a queue that was away) left unqueued in the outbox
// (tenant_events) are queued, and queued ones a week old are forgotten.
import type { JobPayload } from '@tenantdb/jobs';
import { PoolServerUnavailableError } from '@tenantdb/pool-server';
import { syncTenantAccess, type WorkerDeps } from '../context';
import type { Pass } from './reconcile';

type Deps = Pick<WorkerDeps, 'servers' | 'usage' | 'tenantEvents' | 'tenantAccess' | 'queues' | 'config'>;

/** How long a queued event is kept: its delivery job has long run or given up by then. */
const KEEP_QUEUED_MS = 7 * 86_400_000;

export async function pendingEvents(deps: Deps, pass: Pass): Promise<number> {
  const now = Date.now();
  const before = new Date(now - deps.config.TENANTDB_ACCESS_REPAIR_AFTER_MS);
  let queued = 0;
  for (const event of await deps.tenantEvents.findUnqueued(before, 500)) {
    try {
      await deps.queues.enqueue('deliver-tenant-event', event as JobPayload<'deliver-tenant-event'>);
      await deps.tenantEvents.markQueued(event.delivery_id);
      pass.log.warn({ delivery_id: event.delivery_id, event: event.event }, 'queued an event left unqueued');
      queued++;
    } catch (err) {
      pass.errors++;
      pass.log.warn(
        { delivery_id: event.delivery_id, reason: (err as Error).message },
        'an event left unqueued was not queued',
      );
    }
  }
  await deps.tenantEvents.pruneQueued(new Date(now - KEEP_QUEUED_MS));
  return queued;
}

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

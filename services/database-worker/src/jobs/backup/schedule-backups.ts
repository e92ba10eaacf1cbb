// schedule-backups: the periodic pass (TENANTDB_BACKUP_SCHEDULE_MS) that gives every ready tenant
// of a plan with backup_interval_hours a backup per interval, and applies retention. Which tenants
// are due, spread over the interval and capped per server (TENANTDB_BACKUPS_PER_SERVER dumps at
// once, running ones included), is BackupsRepo.dueForBackup; each due tenant gets a running backup
// row and a backup-tenant job. Retention deletes the object of every expired backup, then its row.
// A tick does a bounded amount of work (BATCH each); what is left is the next tick's.
import { randomUUID } from 'node:crypto';
import type { JobContext, WorkerDeps } from '../../context';

const BATCH = 500;

export function scheduleBackups(deps: WorkerDeps) {
  const { backups, queues, config } = deps;

  async function schedule(log: JobContext['log']): Promise<number> {
    const due = await backups.dueForBackup({ perServer: config.TENANTDB_BACKUPS_PER_SERVER, limit: BATCH });
    let started = 0;
    for (const tenant of due) {
      const attempt = await backups.start({
        id: randomUUID(),
        ...tenant,
        reason: 'scheduled',
        requested_by: 'database-worker',
      });
      if (attempt.kind !== 'started') continue;
      try {
        await queues.enqueue('backup-tenant', { backup_id: attempt.backup.id });
        started++;
      } catch (err) {
        await backups.fail(attempt.backup.id, 'the job queue was unavailable');
        log.warn({ err: (err as Error).message }, 'backup scheduling stopped: queue unavailable');
        break;
      }
    }
    return started;
  }

  async function expire(log: JobContext['log']): Promise<number> {
    const store = deps.backupStore!;
    let deleted = 0;
    for (const backup of await backups.expired(BATCH)) {
      try {
        await store.delete(backup.object_key);
      } catch (err) {
        // The row stays (and is tried again next tick) while its object may still be there.
        log.warn({ backup_id: backup.id, err: (err as Error).message }, 'expired backup not deleted');
        continue;
      }
      await backups.delete(backup.id);
      deleted++;
    }
    return deleted;
  }

  return async (_payload: Record<string, never>, { log }: JobContext) => {
    if (!deps.backupStore) return 'no backup store configured';
    const started = await schedule(log);
    const expired = await expire(log);
    if (started || expired) log.info({ started, expired }, 'backups scheduled and expired');
    return { started, expired };
  };
}

// restore-tenant: advances one restore (tenant_restores) phase by phase, design §11 and issue 16.
// A restore never overwrites in place:
//   pending → restoring: the backup streamed from the store, decrypted and checked against its
//     digest, into a new database on the allocation's server (closed to the tenant)
//   cutting_over: the tenant's writes blocked (no login, its sessions ended, as a move's cut-over
//     does), the two databases swapped by name in one transaction (the restored one becomes the
//     tenant's; the replaced one is kept under the restore's name, closed), logins open again;
//     then the catalog record moves on with the cut-over time
//   grace: the replaced database stays for TENANTDB_RESTORE_GRACE_MS (the job waits delayed)
//   dropping_old: dropped → done
//   failing (before the cut-over): the restored database dropped, logins open → failed
// `replace` restores into the backup's own allocation (its role and password untouched, so the
// tenant logs in as before); `copy` into another allocation of the same customer (made by the API
// before the restore is recorded: its own database, role and password), without the archive's
// grants. Each phase repeats safely; one worker at a time holds a restore (a session lock).
import { LOCK_KEYS, type TenantRestore, trySessionLock } from '@tenantdb/catalog';
import { PermanentJobError, RetryLater } from '@tenantdb/jobs';
import { describePgError } from '@tenantdb/pool-server';
import type { JobContext, WorkerDeps } from '../../context';
import { createRestoreSteps, type RestoreParts } from './restore-steps';

export function restoreTenant(deps: WorkerDeps) {
  const { db, restores, backups, tenants, servers, config, audit, metrics } = deps;
  const steps = createRestoreSteps(deps);

  async function partsOf(restore: TenantRestore): Promise<RestoreParts> {
    const [backup, tenant] = await Promise.all([
      restore.backup_id ? backups.findById(restore.backup_id) : undefined,
      tenants.findById(restore.tenant_database_id),
    ]);
    if (!backup || !tenant) throw new PermanentJobError('the restore names a row that is gone');
    const server = await servers.findById(tenant.db_server_id);
    if (!server) throw new PermanentJobError('the allocation names a server that is gone');
    return steps.partsOf(restore, backup, tenant, server);
  }

  async function advance(p: RestoreParts, to: TenantRestore['phase'], patch = {}) {
    const next = await restores.advance(p.restore.id, [p.restore.phase], to, patch);
    if (next)
      await audit.record({
        actor: 'database-worker',
        action: `restore.${to}`,
        db_server_id: p.server.id,
        tenant_database_id: p.tenant.id,
        details: { restore_id: p.restore.id, backup_id: p.backup.id, mode: p.restore.mode },
      });
    return next;
  }

  async function step(restore: TenantRestore, log: JobContext['log']): Promise<TenantRestore | string> {
    const p = await partsOf(restore);
    switch (restore.phase) {
      case 'pending':
        if (p.backup.status !== 'completed') throw new PermanentJobError('the backup is not completed');
        if (p.tenant.status !== 'ready') throw new PermanentJobError(`the allocation is ${p.tenant.status}`);
        return (await advance(p, 'restoring')) ?? 'superseded';
      case 'restoring': {
        const bytes = await steps.restoreIntoScratch(p);
        return (await advance(p, 'cutting_over', { bytes_restored: bytes })) ?? 'superseded';
      }
      case 'cutting_over': {
        await steps.blockWrites(p);
        try {
          await steps.swap(p);
        } finally {
          // Writes are blocked only for the swap, whether it worked or is to be retried.
          await steps.allowLogins(p);
        }
        const next = await advance(p, 'grace', {
          cut_over_at: new Date(),
          drop_old_after: new Date(Date.now() + config.TENANTDB_RESTORE_GRACE_MS),
        });
        log.info({ restore_id: restore.id, mode: restore.mode }, 'restore cut over');
        return next ?? 'superseded';
      }
      case 'grace': {
        const left = (restore.drop_old_after?.getTime() ?? 0) - Date.now();
        if (left > 0) throw new RetryLater(left, 'the replaced database is kept for its grace period');
        return (await advance(p, 'dropping_old')) ?? 'superseded';
      }
      case 'dropping_old':
        await steps.dropOld(p);
        if (await advance(p, 'done')) metrics.restoreFinished(restore.mode, 'done');
        return 'done';
      case 'failing':
        await steps.dropScratch(p);
        await steps.allowLogins(p).catch(() => {});
        if (await advance(p, 'failed')) {
          metrics.restoreFinished(restore.mode, 'failed');
          log.warn({ restore_id: restore.id, error: restore.error }, 'restore failed');
        }
        return 'failed';
      default:
        return restore.phase;
    }
  }

  async function drive(restoreId: string, log: JobContext['log'], lastAttempt: boolean): Promise<string> {
    let restore = await restores.findById(restoreId);
    while (restore) {
      let next: TenantRestore | string;
      try {
        next = await step(restore, log);
      } catch (err) {
        if (err instanceof RetryLater) throw err;
        const beforeCutOver = ['pending', 'restoring', 'cutting_over'].includes(restore.phase);
        const reason = err instanceof PermanentJobError ? err.message : describePgError(err);
        // Before the cut-over a failure retrying cannot fix (or the last attempt's) is undone.
        if (beforeCutOver && (err instanceof PermanentJobError || lastAttempt)) {
          await restores.advance(restoreId, [restore.phase], 'failing', { error: reason });
          restore = await restores.findById(restoreId);
          continue;
        }
        throw err instanceof PermanentJobError ? err : new Error(reason);
      }
      if (typeof next === 'string') {
        if (next !== 'superseded') return next;
        restore = await restores.findById(restoreId);
        continue;
      }
      restore = next;
    }
    return 'the restore is gone';
  }

  return async ({ restore_id }: { restore_id: string }, { job, log }: JobContext) => {
    const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    const attempt = await trySessionLock(db, LOCK_KEYS.restore(restore_id), () =>
      drive(restore_id, log, lastAttempt),
    );
    return attempt.acquired ? attempt.value : 'another worker is advancing this restore';
  };
}

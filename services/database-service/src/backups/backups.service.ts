// Backups and restores, the API side: checks a request against the catalog and the store (every
// refusal a clear 4xx, a store that is down a 503, nothing written either way), records the backup
// or restore, and hands it to database-worker (backup-tenant, restore-tenant). Starting either
// holds the allocation's rotation lock, as a move's start does, so it never meets a rotation or
// the start of a release.

import { randomUUID } from 'node:crypto';
import type { BackupStore } from '@tenantdb/backups';
import {
  type AuditRepo,
  type Backup as BackupRow,
  type BackupsRepo,
  type CatalogDb,
  LOCK_KEYS,
  type MovesRepo,
  type RestoresRepo,
  type TenantDatabase,
  type TenantDatabasesRepo,
  type TenantRestore,
  trySessionLock,
} from '@tenantdb/catalog';
import type { Backup, BackupList, BackupsQuery, Restore, RestoreRequest } from '@tenantdb/contracts';
import {
  BadRequestError,
  ConflictError,
  NotFoundError,
  type RequestContext,
  UnavailableError,
} from '@tenantdb/http';
import type { Queues } from '@tenantdb/jobs';

export interface BackupsDeps {
  db: CatalogDb;
  backups: BackupsRepo;
  restores: RestoresRepo;
  moves: Pick<MovesRepo, 'findActiveForTenant'>;
  tenants: Pick<TenantDatabasesRepo, 'findLiveByInstance' | 'findLatestByInstance' | 'findById'>;
  queues: Pick<Queues, 'enqueue'>;
  audit: Pick<AuditRepo, 'record'>;
  store: BackupStore | undefined;
}

export function createBackupsService(deps: BackupsDeps) {
  const { db, backups, restores, moves, tenants, queues, audit } = deps;

  const backupView = (b: BackupRow): Backup => ({
    id: b.id,
    tenant_database_id: b.tenant_database_id,
    instance_id: b.instance_id,
    customer_id: b.customer_id,
    db_server_id: b.db_server_id,
    status: b.status,
    reason: b.reason,
    size_bytes: b.size_bytes,
    stored_bytes: b.stored_bytes,
    sha256: b.sha256,
    key_id: b.key_id,
    manifest: b.manifest,
    error: b.error,
    requested_by: b.requested_by,
    created_at: b.created_at.toISOString(),
    finished_at: b.finished_at?.toISOString() ?? null,
    expires_at: b.expires_at?.toISOString() ?? null,
    last_verified_at: b.last_verified_at?.toISOString() ?? null,
    last_verify_result: b.last_verify_result,
    last_verify_error: b.last_verify_error,
  });

  const restoreView = (r: TenantRestore, tenant: TenantDatabase | undefined): Restore => ({
    id: r.id,
    backup_id: r.backup_id,
    mode: r.mode,
    tenant_database_id: r.tenant_database_id,
    instance_id: tenant?.instance_id ?? null,
    phase: r.phase,
    bytes_restored: r.bytes_restored,
    error: r.error,
    requested_by: r.requested_by,
    created_at: r.created_at.toISOString(),
    updated_at: r.updated_at.toISOString(),
    cut_over_at: r.cut_over_at?.toISOString() ?? null,
    drop_old_after: r.drop_old_after?.toISOString() ?? null,
    finished_at: r.finished_at?.toISOString() ?? null,
  });

  /** The store is configured and answers; 503 otherwise (checked before anything is written). */
  async function storeUp(): Promise<void> {
    if (!deps.store)
      throw new UnavailableError('no backup store is configured (TENANTDB_BACKUP_STORE=none)', 60);
    try {
      await deps.store.ping();
    } catch {
      throw new UnavailableError('the backup store is unavailable; retry later', 30);
    }
  }

  /** A live, ready allocation no move, restore or release is working on. */
  async function settled(instanceId: string, what: string): Promise<TenantDatabase> {
    const row = await tenants.findLiveByInstance(instanceId);
    if (!row) throw new NotFoundError(`no live allocation for this ${what}`);
    if (row.status !== 'ready') throw new ConflictError(`the allocation is ${row.status}`);
    if (await moves.findActiveForTenant(row.id)) throw new ConflictError('the allocation is being moved');
    if (await restores.findActiveForTenant(row.id))
      throw new ConflictError('a restore of this allocation is under way');
    return row;
  }

  /** `fn` under the allocation's rotation lock (no rotation or release meanwhile); 409 when held. */
  async function locked<T>(row: TenantDatabase, fn: () => Promise<T>): Promise<T> {
    const attempt = await trySessionLock(db, LOCK_KEYS.rotation(row.id), async () => {
      const current = await tenants.findById(row.id);
      if (current?.status !== 'ready' || current.db_server_id !== row.db_server_id)
        throw new ConflictError('the allocation changed; retry');
      return fn();
    });
    if (!attempt.acquired) throw new ConflictError('this allocation is being rotated or released; retry');
    return attempt.value;
  }

  return {
    async start(instanceId: string, ctx: RequestContext): Promise<Backup> {
      const row = await settled(instanceId, 'instance_id');
      await storeUp();
      const started = await locked(row, () =>
        backups.start({
          id: randomUUID(),
          tenant_database_id: row.id,
          instance_id: row.instance_id,
          customer_id: row.customer_id,
          db_server_id: row.db_server_id,
          reason: 'manual',
          requested_by: ctx.actor,
        }),
      );
      if (started.kind === 'running') {
        // Asking again resumes one whose job was lost (a worker killed on its last attempt): the
        // job id is the backup's, so a job still queued or running is not added twice.
        await queues.enqueue('backup-tenant', { backup_id: started.backup.id }).catch(() => {});
        return backupView(started.backup);
      }
      try {
        await queues.enqueue('backup-tenant', { backup_id: started.backup.id });
      } catch (err) {
        // Nothing was dumped: the row is failed (never listed as a backup), then 503.
        await backups.fail(started.backup.id, 'the job queue was unavailable');
        throw err;
      }
      await audit.record({
        actor: ctx.actor,
        action: 'backup.start',
        request_id: ctx.requestId,
        tenant_database_id: row.id,
        db_server_id: row.db_server_id,
        details: { backup_id: started.backup.id },
      });
      return backupView(started.backup);
    },

    async get(id: string): Promise<Backup> {
      const backup = await backups.findById(id);
      if (!backup) throw new NotFoundError('no backup with this id');
      return backupView(backup);
    },

    async list(query: BackupsQuery): Promise<BackupList> {
      let tenantId: string | undefined;
      if (query.instance_id) {
        const row = await tenants.findLatestByInstance(query.instance_id);
        if (!row) return { backups: [], total_count: 0 };
        tenantId = row.id;
      }
      const { rows, total } = await backups.list({
        ...(tenantId ? { tenant_database_id: tenantId } : {}),
        ...(query.status ? { status: query.status } : {}),
        limit: query.limit,
        offset: query.offset,
      });
      return { backups: rows.map(backupView), total_count: total };
    },

    async restore(backupId: string, req: RestoreRequest, ctx: RequestContext): Promise<Restore> {
      const backup = await backups.findById(backupId);
      if (!backup) throw new NotFoundError('no backup with this id');
      if (backup.status !== 'completed') throw new ConflictError(`the backup is ${backup.status}`);
      if (backup.expires_at && backup.expires_at.getTime() <= Date.now())
        throw new ConflictError('the backup has expired');
      let target: TenantDatabase;
      if (req.mode === 'replace') {
        if (!backup.instance_id) throw new ConflictError('the backup has no instance to restore into');
        target = await settled(backup.instance_id, "backup's instance");
        if (target.id !== backup.tenant_database_id)
          throw new ConflictError(
            'the backup was taken of an earlier allocation of this instance; restore it as a copy',
          );
      } else {
        if (req.target_instance_id === backup.instance_id)
          throw new BadRequestError('a copy goes to another instance; use mode replace for the same one');
        target = await settled(req.target_instance_id, 'target_instance_id');
        if (!target.customer_id || target.customer_id !== backup.customer_id)
          throw new ConflictError('the target allocation belongs to another customer');
      }
      // The swap ends with the login open, and the restored database carries none of a
      // restriction's grants: such a tenant is restored once resumed or lifted (as moves are).
      if (target.suspended_at)
        throw new ConflictError('the allocation is suspended; resume it before restoring into it');
      if (target.quota_state === 'restricted')
        throw new ConflictError('the allocation is restricted by its quota; it can be restored once lifted');
      await storeUp();
      if (!(await deps.store!.head(backup.object_key)))
        throw new ConflictError('the backup object is missing from the store');
      const started = await locked(target, () =>
        restores.start({
          backup_id: backup.id,
          tenant_database_id: target.id,
          mode: req.mode,
          requested_by: ctx.actor,
          request_id: ctx.requestId,
        }),
      );
      if (started.kind === 'busy') throw new ConflictError('a restore of this allocation is under way');
      try {
        await queues.enqueue('restore-tenant', { restore_id: started.restore.id });
      } catch (err) {
        await restores.advance(started.restore.id, ['pending'], 'failed', {
          error: 'the job queue was unavailable',
        });
        throw err;
      }
      await audit.record({
        actor: ctx.actor,
        action: 'restore.start',
        request_id: ctx.requestId,
        tenant_database_id: target.id,
        db_server_id: target.db_server_id,
        details: { restore_id: started.restore.id, backup_id: backup.id, mode: req.mode },
      });
      return restoreView(started.restore, target);
    },

    async getRestore(id: string): Promise<Restore> {
      const restore = await restores.findById(id);
      if (!restore) throw new NotFoundError('no restore with this id');
      return restoreView(restore, await tenants.findById(restore.tenant_database_id));
    },
  };
}

export type BackupsService = ReturnType<typeof createBackupsService>;

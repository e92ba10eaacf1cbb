// backup-tenant: one `pg_dump -Fc` of a tenant database into the backup store (issue 16). The
// backups row (made running by whoever asked) is the truth: it becomes completed only once the
// object is whole in the store and its digest and manifest are recorded; a dump that fails or is
// cut leaves a failed row and no object. A worker that dies mid-dump leaves the row running and at
// most an invisible partial write (a hidden temporary file, an unfinished multipart upload): the
// job's next attempt dumps again under the same key.
//
// Consistency of the manifest: a REPEATABLE READ transaction in the tenant database exports its
// snapshot, counts every table's rows in it, and pg_dump dumps that same snapshot (--snapshot),
// so the counts are the rows in the archive whatever the tenant writes meanwhile.

import { getOpened, putSealed } from '@tenantdb/backups';
import { type Backup, type BackupManifest, LOCK_KEYS, trySessionLock } from '@tenantdb/catalog';
import { PermanentJobError } from '@tenantdb/jobs';
import { countArchiveEntries, describePgError, dumpToStream, quoteIdent } from '@tenantdb/pool-server';
import type { JobContext, WorkerDeps } from '../../context';
import { backupToolsFor, requireStore } from './backup-parts';

const TABLES = `
  SELECT n.nspname AS schema, c.relname AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
   ORDER BY 1, 2`;

export function backupTenant(deps: WorkerDeps) {
  const { db, backups, tenants, servers, plans, connections, config, audit } = deps;

  async function dump(backup: Backup, log: JobContext['log']): Promise<string> {
    const store = requireStore(deps);
    const [tenant, server] = await Promise.all([
      tenants.findById(backup.tenant_database_id),
      servers.findById(backup.db_server_id),
    ]);
    if (!tenant || !server) throw new PermanentJobError('the backup names a row that is gone');
    if (tenant.db_server_id !== server.id)
      throw new PermanentJobError('the tenant is no longer on the server this backup was asked of');
    const started = performance.now();
    const { tools, conn, serverVersion } = await backupToolsFor(deps, server, tenant.db_name);

    const written = await connections.withOwnClient(
      server,
      async (c) => {
        await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        try {
          const { rows: snap } = await c.query<{ id: string }>('SELECT pg_export_snapshot() AS id');
          const { rows: tables } = await c.query<{ schema: string; name: string }>(TABLES);
          const rowCounts: Record<string, number> = {};
          for (const t of tables) {
            const { rows } = await c.query<{ n: string }>(
              `SELECT count(*) AS n FROM ${quoteIdent(t.schema)}.${quoteIdent(t.name)}`,
            );
            rowCounts[`${t.schema}.${t.name}`] = Number(rows[0]!.n);
          }
          const dumped = dumpToStream(tools, conn, { snapshot: snap[0]!.id });
          try {
            const sealed = await putSealed(
              store,
              backup.object_key,
              dumped.stream,
              config.TENANTDB_ENCRYPTION_KEYS,
            );
            return { sealed, rowCounts };
          } finally {
            dumped.kill();
          }
        } finally {
          await c.query('ROLLBACK').catch(() => {});
        }
      },
      { database: tenant.db_name },
    );
    // Read back: the stored object opens with the ring and pg_restore reads its table of contents.
    const entries = await countArchiveEntries(
      tools,
      await getOpened(store, backup.object_key, config.TENANTDB_ENCRYPTION_KEYS),
    );
    const manifest: BackupManifest = {
      format: 'pg_dump -Fc',
      tenant_database_id: tenant.id,
      db_name: tenant.db_name,
      db_server_id: server.id,
      server_version: serverVersion,
      pg_dump_version: tools.version,
      size_bytes: written.sealed.bytes,
      sha256: written.sealed.sha256,
      key_id: written.sealed.keyId,
      archive_entries: entries,
      row_counts: written.rowCounts,
      duration_ms: Math.round(performance.now() - started),
    };
    const plan = tenant.plan_tier ? await plans.find(tenant.plan_tier) : undefined;
    const done = await backups.complete(backup.id, {
      size_bytes: written.sealed.bytes,
      stored_bytes: written.sealed.storedBytes,
      sha256: written.sealed.sha256,
      key_id: written.sealed.keyId,
      manifest,
      retention_days: plan?.backup_retention_days ?? 7,
    });
    if (!done) {
      // Failed or completed by someone else meanwhile: an object of a failed row must not stay.
      const now = await backups.findById(backup.id);
      if (now?.status === 'failed') await store.delete(backup.object_key);
      return `backup is ${now?.status ?? 'gone'}`;
    }
    deps.metrics.backupFinished('completed', written.sealed.bytes, manifest.duration_ms / 1000);
    await audit.record({
      actor: 'database-worker',
      action: 'backup.completed',
      db_server_id: server.id,
      tenant_database_id: tenant.id,
      details: { backup_id: backup.id, size_bytes: written.sealed.bytes },
    });
    log.info({ backup_id: backup.id, size_bytes: written.sealed.bytes, entries }, 'backup completed');
    return 'completed';
  }

  /** The row failed and its object deleted: never listed as a backup. */
  async function failBackup(backup: Backup, reason: string, log: JobContext['log']) {
    await deps.backupStore?.delete(backup.object_key).catch(() => {});
    if (await backups.fail(backup.id, reason)) {
      deps.metrics.backupFinished('failed', 0, 0);
      log.warn({ backup_id: backup.id, reason }, 'backup failed');
    }
  }

  return async ({ backup_id }: { backup_id: string }, { job, log }: JobContext) => {
    const attempt = await trySessionLock(db, LOCK_KEYS.backup(backup_id), async () => {
      const backup = await backups.findById(backup_id);
      if (!backup) return 'the backup is gone';
      if (backup.status !== 'running') return `backup is ${backup.status}`;
      try {
        return await dump(backup, log);
      } catch (err) {
        const reason = err instanceof PermanentJobError ? err.message : describePgError(err);
        // The object of an attempt that failed is removed at once; the row fails when no attempt is left.
        await deps.backupStore?.delete(backup.object_key).catch(() => {});
        const last = err instanceof PermanentJobError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
        if (last) await failBackup(backup, reason, log);
        throw err instanceof PermanentJobError ? err : new Error(reason);
      }
    });
    return attempt.acquired ? attempt.value : 'another worker is running this backup';
  };
}

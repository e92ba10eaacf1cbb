// Backups (migration 0020): one row per object in the backup store. A row is `running` while its
// dump streams, `completed` only with its digest and manifest (a CHECK), `failed` otherwise; only
// completed rows are restorable. Every change is conditional on the status it leaves, so a job
// delivered twice, or the reconciler, never completes a backup another attempt failed.
import { sql } from 'kysely';
import type { CatalogDb, Executor } from '../db';
import type { Backup, BackupManifest, BackupReason, BackupStatus } from '../types';

export type BackupsRepo = ReturnType<typeof createBackupsRepo>;

export type BackupStart =
  | { kind: 'started'; backup: Backup }
  /** A dump of this tenant is already running (the partial unique index). */
  | { kind: 'running'; backup: Backup };

export function createBackupsRepo(db: CatalogDb) {
  return {
    findById(id: string, trx: Executor = db): Promise<Backup | undefined> {
      return trx.selectFrom('backups').selectAll().where('id', '=', id).executeTakeFirst();
    },

    /**
     * Records a backup as running under its object key (`<tenant id>/<backup id>.tdbk`, the id
     * chosen here so key and row agree). At most one running per tenant: when another is, that one.
     */
    async start(
      req: {
        id: string;
        tenant_database_id: string;
        instance_id: string | null;
        customer_id: string | null;
        db_server_id: string;
        reason: BackupReason;
        requested_by: string;
      },
      trx: Executor = db,
    ): Promise<BackupStart> {
      const inserted = await trx
        .insertInto('backups')
        .values({
          ...req,
          status: 'running',
          object_key: `${req.tenant_database_id}/${req.id}.tdbk`,
          started_at: sql<Date>`now()`,
        })
        .onConflict((oc) => oc.column('tenant_database_id').where('status', '=', 'running').doNothing())
        .returningAll()
        .executeTakeFirst();
      if (inserted) return { kind: 'started', backup: inserted };
      const running = await trx
        .selectFrom('backups')
        .selectAll()
        .where('tenant_database_id', '=', req.tenant_database_id)
        .where('status', '=', 'running')
        .executeTakeFirst();
      if (running) return { kind: 'running', backup: running };
      // It finished between the insert and the read: try once more.
      return this.start(req, trx);
    },

    /** running → completed with what the dump recorded; undefined when it was not running. */
    complete(
      id: string,
      done: {
        size_bytes: number;
        stored_bytes: number;
        sha256: string;
        key_id: string;
        manifest: BackupManifest;
        retention_days: number;
      },
      trx: Executor = db,
    ): Promise<Backup | undefined> {
      return trx
        .updateTable('backups')
        .set({
          status: 'completed',
          size_bytes: done.size_bytes,
          stored_bytes: done.stored_bytes,
          sha256: done.sha256,
          key_id: done.key_id,
          manifest: JSON.stringify(done.manifest),
          finished_at: sql<Date>`now()`,
          expires_at: sql<Date>`now() + make_interval(days => ${done.retention_days})`,
        })
        .where('id', '=', id)
        .where('status', '=', 'running')
        .returningAll()
        .executeTakeFirst();
    },

    /** running → failed with the reason (its object is deleted by the caller). */
    async fail(id: string, error: string, trx: Executor = db): Promise<boolean> {
      const res = await trx
        .updateTable('backups')
        .set({ status: 'failed', error: error.slice(0, 2000), finished_at: sql<Date>`now()` })
        .where('id', '=', id)
        .where('status', '=', 'running')
        .executeTakeFirst();
      return Number(res.numUpdatedRows) > 0;
    },

    /** Newest first; by status. */
    async listForTenant(
      tenantDatabaseId: string,
      filter: { status?: BackupStatus; limit: number; offset: number },
      trx: Executor = db,
    ): Promise<{ rows: Backup[]; total: number }> {
      let query = trx.selectFrom('backups').where('tenant_database_id', '=', tenantDatabaseId);
      if (filter.status) query = query.where('status', '=', filter.status);
      const [rows, count] = await Promise.all([
        query
          .selectAll()
          .orderBy('created_at', 'desc')
          .orderBy('id')
          .limit(filter.limit)
          .offset(filter.offset)
          .execute(),
        query.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
      ]);
      return { rows, total: Number(count.n) };
    },
  };
}

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

    /** Backups running since before `before`: for the reconciler to give their job again. */
    findStaleRunning(before: Date, trx: Executor = db): Promise<Backup[]> {
      return trx
        .selectFrom('backups')
        .selectAll()
        .where('status', '=', 'running')
        .where('started_at', '<', before)
        .execute();
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

    /**
     * Tenants due a scheduled backup, at most `perServer` dumps per server at once (the running
     * backups of a server count against it): ready tenants of a plan with backup_interval_hours
     * whose latest backup is older than the interval (a failed one: older than an hour, or the
     * interval if shorter). A tenant never backed up is due at ready_at plus an offset of its
     * own in the interval (a hash of its id), so a plan's tenants are spread over the interval
     * rather than all due at once. Oldest-latest first on each server.
     */
    async dueForBackup(
      opts: { perServer: number; limit: number },
      trx: Executor = db,
    ): Promise<Pick<Backup, 'tenant_database_id' | 'instance_id' | 'customer_id' | 'db_server_id'>[]> {
      const { rows } = await sql<
        Pick<Backup, 'tenant_database_id' | 'instance_id' | 'customer_id' | 'db_server_id'>
      >`
        WITH running AS (
          SELECT db_server_id, count(*)::int AS n FROM backups WHERE status = 'running' GROUP BY db_server_id
        ), due AS (
          SELECT t.id AS tenant_database_id, t.instance_id, t.customer_id, t.db_server_id,
                 row_number() OVER (PARTITION BY t.db_server_id ORDER BY last.created_at NULLS FIRST, t.id) AS rank
            FROM tenant_databases t
            JOIN plans p ON p.plan_tier = t.plan_tier AND p.backup_interval_hours IS NOT NULL
            LEFT JOIN LATERAL (
              SELECT b.created_at, b.status FROM backups b
               WHERE b.tenant_database_id = t.id ORDER BY b.created_at DESC LIMIT 1
            ) last ON true
           WHERE t.status = 'ready'
             AND (last.status IS NULL OR last.status <> 'running')
             AND CASE
                   WHEN last.created_at IS NULL THEN
                     coalesce(t.ready_at, t.created_at)
                       + make_interval(secs => abs(hashtext(t.id::text)::bigint) % (p.backup_interval_hours * 3600)) <= now()
                   WHEN last.status = 'failed' THEN
                     last.created_at + least(make_interval(hours => p.backup_interval_hours), interval '1 hour') <= now()
                   ELSE last.created_at + make_interval(hours => p.backup_interval_hours) <= now()
                 END
        )
        SELECT due.tenant_database_id, due.instance_id, due.customer_id, due.db_server_id
          FROM due LEFT JOIN running r ON r.db_server_id = due.db_server_id
         WHERE due.rank <= ${opts.perServer} - coalesce(r.n, 0)
         ORDER BY due.rank, due.tenant_database_id
         LIMIT ${opts.limit}`.execute(trx);
      return rows;
    },

    /** Completed backups past their expiry that no unfinished restore reads, oldest first. */
    expired(limit: number, trx: Executor = db): Promise<Backup[]> {
      return trx
        .selectFrom('backups')
        .selectAll()
        .where('status', '=', 'completed')
        .where('expires_at', '<=', sql<Date>`now()`)
        .where(({ not, exists, selectFrom }) =>
          not(
            exists(
              selectFrom('tenant_restores as r')
                .select('r.id')
                .whereRef('r.backup_id', '=', 'backups.id')
                .where('r.phase', 'not in', ['done', 'failed']),
            ),
          ),
        )
        .orderBy('expires_at')
        .limit(limit)
        .execute();
    },

    /** Removes a row (retention, once its object is deleted); a finished restore keeps its record. */
    async delete(id: string, trx: Executor = db): Promise<void> {
      await trx.deleteFrom('backups').where('id', '=', id).execute();
    },

    /**
     * A sample for restore drills: the latest completed backup of tenants whose latest one has
     * not been verified within `staleAfterHours`, least recently verified first.
     */
    async toVerify(opts: { limit: number; staleAfterHours: number }, trx: Executor = db): Promise<Backup[]> {
      const { rows } = await sql<Backup>`
        SELECT b.* FROM (
          SELECT DISTINCT ON (tenant_database_id) * FROM backups
           WHERE status = 'completed' AND expires_at > now()
           ORDER BY tenant_database_id, created_at DESC
        ) b
         WHERE b.last_verified_at IS NULL OR b.last_verified_at < now() - make_interval(hours => ${opts.staleAfterHours})
         ORDER BY b.last_verified_at NULLS FIRST, b.created_at
         LIMIT ${opts.limit}`.execute(trx);
      return rows;
    },

    /** The outcome of a restore drill, and when. */
    async recordVerification(
      id: string,
      passed: boolean,
      error: string | null,
      trx: Executor = db,
    ): Promise<void> {
      await trx
        .updateTable('backups')
        .set({
          last_verified_at: sql<Date>`now()`,
          last_verify_result: passed ? 'passed' : 'failed',
          last_verify_error: error?.slice(0, 2000) ?? null,
        })
        .where('id', '=', id)
        .execute();
    },

    /**
     * Aggregates for the metrics (no tenant named): ready tenants of a plan with an interval whose
     * latest completed backup (or, never backed up, their ready time) is older than 1.5 intervals;
     * the age of the oldest such latest backup; latest backups whose restore drill failed.
     */
    async figures(
      trx: Executor = db,
    ): Promise<{ overdue: number; oldestAgeSeconds: number; drillsFailing: number }> {
      const { rows } = await sql<{ overdue: number; oldest: number | null; failing: number }>`
        WITH latest AS (
          SELECT p.backup_interval_hours AS hours,
                 coalesce((SELECT max(b.finished_at) FROM backups b
                            WHERE b.tenant_database_id = t.id AND b.status = 'completed'),
                          t.ready_at, t.created_at) AS since
            FROM tenant_databases t
            JOIN plans p ON p.plan_tier = t.plan_tier AND p.backup_interval_hours IS NOT NULL
           WHERE t.status = 'ready'
        )
        SELECT (SELECT count(*)::int FROM latest WHERE since < now() - make_interval(secs => hours * 5400)) AS overdue,
               (SELECT extract(epoch FROM now() - min(since))::float8 FROM latest) AS oldest,
               (SELECT count(*)::int FROM (
                  SELECT DISTINCT ON (tenant_database_id) last_verify_result FROM backups
                   WHERE status = 'completed' ORDER BY tenant_database_id, created_at DESC
                ) l WHERE l.last_verify_result = 'failed') AS failing`.execute(trx);
      const r = rows[0]!;
      return { overdue: r.overdue, oldestAgeSeconds: Math.round(r.oldest ?? 0), drillsFailing: r.failing };
    },

    /** Newest first; by tenant and status (none: the whole fleet's, e.g. every failed backup). */
    async list(
      filter: { tenant_database_id?: string; status?: BackupStatus; limit: number; offset: number },
      trx: Executor = db,
    ): Promise<{ rows: Backup[]; total: number }> {
      let query = trx.selectFrom('backups');
      if (filter.tenant_database_id)
        query = query.where('tenant_database_id', '=', filter.tenant_database_id);
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

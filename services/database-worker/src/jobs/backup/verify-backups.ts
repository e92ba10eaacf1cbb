// verify-backups: restore drills (issue 16). A sample of recent backups (the latest of each
// tenant not verified within a day) is restored into a scratch database on the server of its
// tenant, checked against its manifest — the archive's digest as it is read, its number of
// entries, every table's rows — and dropped. The result and time are recorded on the backup
// (last_verified_at, last_verify_result, last_verify_error). A damaged object, a key no longer
// configured or a manifest that does not match fails the drill; the tenant is never touched.
import { digestTap, getOpened } from '@tenantdb/backups';
import type { Backup, BackupManifest } from '@tenantdb/catalog';
import { PermanentJobError } from '@tenantdb/jobs';
import { countArchiveEntries, describePgError, quoteIdent, restoreFromStream } from '@tenantdb/pool-server';
import type { JobContext, WorkerDeps } from '../../context';
import { backupToolsFor, requireStore } from './backup-parts';

const SAMPLE = 5;
const TABLES = `
  SELECT n.nspname AS schema, c.relname AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND n.nspname NOT LIKE 'pg_toast%'`;

export const drillDatabaseName = (backupId: string) => `tenantdb_drill_${backupId.replaceAll('-', '')}`;

export function verifyBackups(deps: WorkerDeps) {
  const { backups, servers, tenants, connections, config } = deps;

  /** Undefined when the backup matches its manifest; what differs otherwise. */
  async function drill(backup: Backup): Promise<string | undefined> {
    const store = requireStore(deps);
    const manifest = backup.manifest as BackupManifest;
    const tenant = await tenants.findById(backup.tenant_database_id);
    const server = await servers.findById(tenant?.db_server_id ?? backup.db_server_id);
    if (!server) throw new PermanentJobError('no server to drill on');
    const scratch = drillDatabaseName(backup.id);
    const { tools, conn } = await backupToolsFor(deps, server, scratch);
    const run = (statement: string) => connections.withClient(server, (c) => c.query(statement));
    await run(`DROP DATABASE IF EXISTS ${quoteIdent(scratch)} WITH (FORCE)`);
    await run(`CREATE DATABASE ${quoteIdent(scratch)}`);
    await run(`REVOKE ALL ON DATABASE ${quoteIdent(scratch)} FROM PUBLIC`);
    try {
      const keys = config.TENANTDB_ENCRYPTION_KEYS;
      const entries = await countArchiveEntries(tools, await getOpened(store, backup.object_key, keys));
      const tap = digestTap();
      await restoreFromStream(tools, conn, (await getOpened(store, backup.object_key, keys)).pipe(tap), {
        noAcl: true,
      });
      const digest = tap.digest();
      if (digest.sha256 !== backup.sha256) return 'the archive does not match its sha256';
      if (entries !== manifest.archive_entries)
        return `the archive has ${entries} entries, the manifest ${manifest.archive_entries}`;
      const counts = await connections.withOwnClient(
        server,
        async (c) => {
          const out: Record<string, number> = {};
          for (const t of (await c.query<{ schema: string; name: string }>(TABLES)).rows) {
            const { rows } = await c.query<{ n: string }>(
              `SELECT count(*) AS n FROM ${quoteIdent(t.schema)}.${quoteIdent(t.name)}`,
            );
            out[`${t.schema}.${t.name}`] = Number(rows[0]!.n);
          }
          return out;
        },
        { database: scratch },
      );
      const expected = manifest.row_counts;
      for (const name of new Set([...Object.keys(expected), ...Object.keys(counts)]))
        if (expected[name] !== counts[name])
          return `table ${name}: ${counts[name] ?? 'missing'} rows restored, ${expected[name] ?? 'none'} in the manifest`;
      return undefined;
    } finally {
      await run(`DROP DATABASE IF EXISTS ${quoteIdent(scratch)} WITH (FORCE)`);
    }
  }

  return async (_payload: Record<string, never>, { log }: JobContext) => {
    if (!deps.backupStore) return 'no backup store configured';
    const sample = await backups.toVerify({ limit: SAMPLE, staleAfterHours: 24 });
    const results = { passed: 0, failed: 0 };
    for (const backup of sample) {
      let failure: string | undefined;
      try {
        failure = await drill(backup);
      } catch (err) {
        failure = err instanceof PermanentJobError ? err.message : describePgError(err);
      }
      await backups.recordVerification(backup.id, !failure, failure ?? null);
      deps.metrics.drillFinished(failure ? 'failed' : 'passed');
      results[failure ? 'failed' : 'passed']++;
      if (failure) log.warn({ backup_id: backup.id, reason: failure }, 'restore drill failed');
    }
    return results;
  };
}

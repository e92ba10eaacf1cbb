// The work a restore does on its tenant's server, one function per step, each safe to repeat: the
// restored database and the replaced one are named by the restore's id (restoreDatabaseNames),
// so a repeat finds what an earlier attempt made. The phases are restore-tenant.ts.
import { digestTap, getOpened } from '@tenantdb/backups';
import type { Backup, DbServer, TenantDatabase, TenantRestore } from '@tenantdb/catalog';
import { PermanentJobError } from '@tenantdb/jobs';
import {
  allowLoginStatement,
  blockWritesStatements,
  connectionLimit,
  endDatabaseSessionsStatement,
  ownerRoleOf,
  quoteIdent,
  restoreDatabaseNames,
  restoreFromStream,
  swapRestoredStatements,
  TENANT_SESSIONS,
  type TenantNames,
} from '@tenantdb/pool-server';
import type { WorkerDeps } from '../../context';
import { backupToolsFor, requireStore } from './backup-parts';

export interface RestoreParts {
  restore: TenantRestore;
  backup: Backup;
  /** The allocation restored into (the backup's own for replace; the new one for copy). */
  tenant: TenantDatabase;
  server: DbServer;
  names: TenantNames;
  db: { scratch: string; old: string };
}

type StepDeps = Pick<WorkerDeps, 'connections' | 'secrets' | 'clientTools' | 'backupStore' | 'config'>;

export function createRestoreSteps(deps: StepDeps) {
  const { connections } = deps;
  const run = (server: DbServer, statements: string[]) =>
    connections.withClient(server, async (c) => {
      for (const s of statements) await c.query(s);
    });
  const databaseExists = (server: DbServer, name: string) =>
    connections.withClient(server, async (c) => {
      const { rows } = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      return rows.length > 0;
    });

  return {
    partsOf(restore: TenantRestore, backup: Backup, tenant: TenantDatabase, server: DbServer): RestoreParts {
      return {
        restore,
        backup,
        tenant,
        server,
        names: { dbName: tenant.db_name, dbUser: tenant.db_user },
        db: restoreDatabaseNames(restore.id),
      };
    },

    /**
     * The backup restored into a new database of the tenant's server, closed to the tenant, its
     * objects owned by the tenant's owner role; the archive checked against the backup's digest
     * as it streams. Made afresh each attempt. Bytes restored.
     */
    async restoreIntoScratch(p: RestoreParts): Promise<number> {
      const store = requireStore(deps);
      const { tools, conn } = await backupToolsFor(deps, p.server, p.db.scratch);
      const owner = ownerRoleOf(p.names);
      await run(p.server, [
        `DROP DATABASE IF EXISTS ${quoteIdent(p.db.scratch)} WITH (FORCE)`,
        `CREATE DATABASE ${quoteIdent(p.db.scratch)} WITH OWNER ${quoteIdent(owner)}`,
        `REVOKE ALL ON DATABASE ${quoteIdent(p.db.scratch)} FROM PUBLIC`,
      ]);
      const tap = digestTap();
      const archive = (
        await getOpened(store, p.backup.object_key, deps.config.TENANTDB_ENCRYPTION_KEYS)
      ).pipe(tap);
      await restoreFromStream(tools, conn, archive, { role: owner, noAcl: p.restore.mode === 'copy' });
      const got = tap.digest();
      if (got.sha256 !== p.backup.sha256 || got.bytes !== p.backup.size_bytes)
        throw new PermanentJobError('the backup object does not match its recorded digest');
      return got.bytes;
    },

    /** No login, every session of the tenant ended (as a move's cut-over does). */
    async blockWrites(p: RestoreParts): Promise<void> {
      await run(p.server, blockWritesStatements(p.names.dbUser));
      await connections.withClient(p.server, async (c) => {
        for (let i = 0; ; i++) {
          const { rows } = await c.query<{ n: number }>(TENANT_SESSIONS, [p.names.dbUser]);
          if (rows[0]!.n === 0) return;
          if (i >= 100) throw new Error('sessions of the tenant are still open');
          await new Promise((r) => setTimeout(r, 50));
        }
      });
    },

    /**
     * The restored database takes the tenant's name (the replaced one the old name, closed); a
     * repeat after it happened finds the scratch database gone and the old one there, and does
     * nothing.
     */
    async swap(p: RestoreParts): Promise<void> {
      const [scratch, old] = await Promise.all([
        databaseExists(p.server, p.db.scratch),
        databaseExists(p.server, p.db.old),
      ]);
      if (!scratch && old) return;
      if (!scratch) throw new PermanentJobError('the restored database is gone');
      await run(p.server, [
        endDatabaseSessionsStatement([p.names.dbName, p.db.scratch]),
        swapRestoredStatements(p.names, p.db, connectionLimit(p.tenant.connection_limit ?? 20)),
      ]);
    },

    allowLogins: (p: RestoreParts) => run(p.server, [allowLoginStatement(p.names.dbUser)]),
    dropScratch: (p: RestoreParts) =>
      run(p.server, [`DROP DATABASE IF EXISTS ${quoteIdent(p.db.scratch)} WITH (FORCE)`]),
    dropOld: (p: RestoreParts) =>
      run(p.server, [`DROP DATABASE IF EXISTS ${quoteIdent(p.db.old)} WITH (FORCE)`]),
  };
}

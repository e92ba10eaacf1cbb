// Pure builders for the SQL a tenant move runs on its source and target servers (see
// services/database-worker/src/jobs/move-tenant.ts for the order). Every name is derived from the
// move's id, so a repeated phase finds what an earlier attempt made, and nothing of a move is
// named with the tenant prefix (reconcile never takes it for a tenant's leftover).
import { quoteIdent, quoteLiteral, type TenantNames } from './tenant.sql';

/** The publication, subscription, replication slot and replication role of one move. */
export function moveObjectName(moveId: string): string {
  const hex = moveId.replaceAll('-', '').toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new Error('a move id is a uuid');
  return `tenantdb_move_${hex}`;
}

/**
 * The replication role the target's subscription logs in to the source with: replication, and a
 * member of the tenant's owner role (reads its tables, may connect to its database). Its password is a
 * fresh one per attempt, sent as a SCRAM verifier.
 */
export function replicationRoleStatements(name: string, tenantRole: string, verifier: string): string[] {
  const role = quoteIdent(name);
  return [
    `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${quoteLiteral(name)}) THEN CREATE ROLE ${role} WITH NOLOGIN REPLICATION; END IF; END $$`,
    `ALTER ROLE ${role} WITH LOGIN REPLICATION PASSWORD ${quoteLiteral(verifier)}`,
    `GRANT ${quoteIdent(tenantRole)} TO ${role}`,
  ];
}

/** libpq conninfo: values quoted, backslashes and quotes escaped. */
export function conninfo(parts: Record<string, string | number>): string {
  return Object.entries(parts)
    .map(([k, v]) => `${k}='${String(v).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`)
    .join(' ');
}

/** Run in the target database. The connection string holds a password: never log this statement. */
export function createSubscriptionStatement(name: string, connection: string): string {
  const n = quoteIdent(name);
  return `CREATE SUBSCRIPTION ${n} CONNECTION ${quoteLiteral(connection)} PUBLICATION ${n} WITH (copy_data = true, create_slot = true, slot_name = ${quoteLiteral(name)})`;
}

/**
 * Drops the subscription without asking the source to drop its slot (the source may be down;
 * the slots are dropped there apart): disable, detach the slot, drop. Run in the target database.
 */
export function dropSubscriptionStatements(name: string): string[] {
  const n = quoteIdent(name);
  const exists = `EXISTS (SELECT FROM pg_subscription WHERE subname = ${quoteLiteral(name)})`;
  return [
    `DO $$ BEGIN IF ${exists} THEN ALTER SUBSCRIPTION ${n} DISABLE; ALTER SUBSCRIPTION ${n} SET (slot_name = NONE); END IF; END $$`,
    `DROP SUBSCRIPTION IF EXISTS ${n}`,
  ];
}

/**
 * Writes blocked on the source: no new logins, and every session of the tenant ended — waited for
 * (pg_terminate_backend's timeout, PostgreSQL 14+): a session signalled but still finishing its
 * COMMIT would otherwise write after the LSN the cut-over waits for, and that write would be lost.
 */
export function blockWritesStatements(dbUser: string): string[] {
  return [
    `ALTER ROLE ${quoteIdent(dbUser)} WITH NOLOGIN`,
    `SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = ${quoteLiteral(dbUser)} AND pid <> pg_backend_pid()`,
  ];
}

/** Sessions of the tenant still there (none once writes are blocked). */
export const TENANT_SESSIONS = 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1';

export function allowLoginStatement(dbUser: string): string {
  return `ALTER ROLE ${quoteIdent(dbUser)} WITH LOGIN`;
}

/** The tenant's tables that logical replication cannot carry updates and deletes of (no key). */
export const TABLES_WITHOUT_IDENTITY = `
  SELECT format('%I.%I', n.nspname, c.relname) AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND n.nspname NOT LIKE 'pg_toast%'
     AND c.relreplident <> 'f'
     AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')
   ORDER BY 1`;

/** "schema table constraint" of every primary key: its pg_restore TOC entry is restored early. */
export const PRIMARY_KEYS = `
  SELECT n.nspname || ' ' || c.relname || ' ' || k.conname AS key
    FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE k.contype = 'p' AND n.nspname NOT IN ('pg_catalog', 'information_schema')`;

/**
 * From a pg_restore TOC listing (`pg_restore -l`): a listing of the primary keys alone (restored
 * right after the tables: the subscription needs them to apply updates and deletes), and the
 * whole listing with those commented out (its post-data section — indexes, foreign keys,
 * triggers — is built once the copy is done, as pgcopydb does).
 */
export function splitPrimaryKeys(
  toc: string,
  primaryKeys: ReadonlySet<string>,
): { keys: string; rest: string } {
  const keys: string[] = [];
  const rest: string[] = [];
  for (const line of toc.split('\n')) {
    const match = /^\d+; \d+ \d+ CONSTRAINT (\S+ \S+ \S+) /.exec(line);
    if (match && primaryKeys.has(match[1]!)) {
      keys.push(line);
      rest.push(`;${line}`);
    } else rest.push(line);
  }
  return { keys: `${keys.join('\n')}\n`, rest: `${rest.join('\n')}\n` };
}

/** Sequence values (read in the source database after writes are blocked). */
export const SEQUENCE_VALUES = `
  SELECT format('%I.%I', schemaname, sequencename) AS name, last_value::text AS value
    FROM pg_sequences WHERE last_value IS NOT NULL`;

export function tenantDatabaseGrants(names: TenantNames): string[] {
  return [
    `REVOKE ALL ON DATABASE ${quoteIdent(names.dbName)} FROM PUBLIC`,
    `GRANT CONNECT, TEMPORARY ON DATABASE ${quoteIdent(names.dbName)} TO ${quoteIdent(names.dbUser)}`,
  ];
}

/** The database a restore is made in, and the name the replaced one keeps for its grace period. */
export function restoreDatabaseNames(restoreId: string): { scratch: string; old: string } {
  const hex = restoreId.replaceAll('-', '').toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new Error('a restore id is a uuid');
  return { scratch: `tenantdb_restore_${hex}`, old: `tenantdb_replaced_${hex}` };
}

/**
 * The swap of a restore's cut-over, one transaction (ALTER DATABASE … RENAME is transactional):
 * the tenant's database takes the old name and stays closed; the restored one takes the tenant's
 * name, its grants and connection limit. Run with the tenant's sessions ended (a database with
 * sessions cannot be renamed).
 */
export function swapRestoredStatements(
  names: TenantNames,
  db: { scratch: string; old: string },
  limit: number,
): string {
  const tenant = quoteIdent(names.dbName);
  return [
    'BEGIN',
    `ALTER DATABASE ${tenant} RENAME TO ${quoteIdent(db.old)}`,
    `ALTER DATABASE ${quoteIdent(db.old)} WITH ALLOW_CONNECTIONS false`,
    `REVOKE ALL ON DATABASE ${quoteIdent(db.old)} FROM ${quoteIdent(names.dbUser)}`,
    `ALTER DATABASE ${quoteIdent(db.scratch)} RENAME TO ${tenant}`,
    `ALTER DATABASE ${tenant} WITH CONNECTION LIMIT ${limit}`,
    ...tenantDatabaseGrants(names),
    'COMMIT',
  ].join(';\n');
}

/** Ends every session in these databases (the admin's own connection is elsewhere). */
export function endDatabaseSessionsStatement(databases: string[]): string {
  return `SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname IN (${databases.map(quoteLiteral).join(', ')}) AND pid <> pg_backend_pid()`;
}

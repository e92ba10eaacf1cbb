// How a tenant's roles, its database's ownership and its privileges are arranged on a server:
// the one place that knows it (create, claim, restrict, lift, suspend, resume, guardrails, drop,
// and the migration of tenants made before it). A move or restore that makes the tenant on
// another server uses these builders, so the copy is arranged the same way.
//
// The arrangement (access_arrangement 2):
// - `<db>_o`, the owner role: NOLOGIN, no attributes. It owns the database; in PostgreSQL 15+ the
//   `public` schema belongs to pg_database_owner, i.e. to it. Everything the tenant creates is
//   owned by it.
// - `<db>_u`, the login role the tenant has the password of: LOGIN, NOINHERIT, CONNECTION LIMIT
//   from the plan, a member of the owner role (SET, not INHERIT), with `ALTER ROLE … SET role =
//   <db>_o`, so every session starts as the owner. As itself (after SET ROLE NONE) it holds only
//   CONNECT and TEMPORARY on its database: it can create nothing, so it never owns anything.
// - Restricted: the superuser revokes the membership (the login role cannot SET ROLE to the owner
//   any more, and cannot GRANT anything on the owner's objects), drops the role default, revokes
//   TEMPORARY, and grants the login role USAGE on the owner's schemas and SELECT, DELETE, TRUNCATE
//   on their tables (SELECT on sequences). Open sessions are ended, so none keeps running as the
//   owner. No SET, RESET ROLE or GRANT of the tenant's own can undo that.
// - Lifted: the membership and the role default come back, TEMPORARY too; sessions are ended so
//   new ones start as the owner again. The direct grants of the restriction stay (harmless).
// - Suspended: the login role is NOLOGIN and its sessions are ended; resumed: LOGIN again, the
//   password untouched.
import { connectionLimit, quoteIdent, quoteLiteral, type TenantNames, type TenantSpec } from './tenant.sql';

/** The owner role of a tenant: owns its database and everything in it; nobody logs in as it. */
export const ownerRoleOf = (names: Pick<TenantNames, 'dbName'>) => `${names.dbName}_o`;

/** Session guardrails a plan sets on its tenants' login roles; null: the server's default. */
export interface Guardrails {
  statementTimeoutMs: number | null;
  idleInTransactionTimeoutMs: number | null;
  tempFileLimitMb: number | null;
  workMemMb: number | null;
}

const GUARDRAIL_SETTINGS = [
  ['statement_timeout', 'statementTimeoutMs', 'ms'],
  ['idle_in_transaction_session_timeout', 'idleInTransactionTimeoutMs', 'ms'],
  ['temp_file_limit', 'tempFileLimitMb', 'MB'],
  ['work_mem', 'workMemMb', 'MB'],
] as const;

/**
 * ALTER ROLE … SET for each guardrail with a value; with `resetUnset`, RESET for the others (a
 * plan change that removes one). A fresh role has none, so create and claim skip the resets.
 */
export function guardrailStatements(dbUser: string, g: Guardrails, opts: { resetUnset: boolean }): string[] {
  const role = quoteIdent(dbUser);
  const out: string[] = [];
  for (const [setting, key, unit] of GUARDRAIL_SETTINGS) {
    const value = g[key];
    if (value === null) {
      if (opts.resetUnset) out.push(`ALTER ROLE ${role} RESET ${setting}`);
      continue;
    }
    if (!Number.isInteger(value) || value < 1) throw new Error(`guardrail ${setting} out of range`);
    out.push(`ALTER ROLE ${role} SET ${setting} = ${quoteLiteral(`${value}${unit}`)}`);
  }
  return out;
}

const ROLE_ATTRIBUTES = 'NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT';
/**
 * The owner role inherits: its only membership is the implicit pg_database_owner of its database,
 * and PostgreSQL 15 gives a NOINHERIT owner none of that role's rights (CREATE on `public` is
 * refused; 16 and later grant it). Nothing else is ever granted to it.
 */
const OWNER_ATTRIBUTES = 'NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT';

/**
 * Role + database with tenant isolation, in three round trips (the first and last each one
 * implicit transaction). The database is created closed (ALLOW_CONNECTIONS false) and only opened
 * once PUBLIC has lost CONNECT, so no other role can slip in between. CREATE DATABASE cannot run
 * inside a transaction block, so it is a batch of its own. `login: false` makes a warm one.
 */
export function createTenantStatements(
  spec: TenantSpec & { login?: boolean; guardrails?: Guardrails | undefined },
): string[] {
  const db = quoteIdent(spec.dbName);
  const role = quoteIdent(spec.dbUser);
  const owner = quoteIdent(ownerRoleOf(spec));
  const limit = connectionLimit(spec.connectionLimit);
  const login = spec.login === false ? 'NOLOGIN' : 'LOGIN';
  return [
    [
      `CREATE ROLE ${owner} WITH NOLOGIN ${OWNER_ATTRIBUTES}`,
      `CREATE ROLE ${role} WITH ${login} ${ROLE_ATTRIBUTES} CONNECTION LIMIT ${limit} PASSWORD ${quoteLiteral(spec.passwordVerifier)} IN ROLE ${owner}`,
      `ALTER ROLE ${role} SET role = ${owner}`,
      ...(spec.guardrails ? guardrailStatements(spec.dbUser, spec.guardrails, { resetUnset: false }) : []),
    ].join(';\n'),
    `CREATE DATABASE ${db} WITH OWNER ${owner} ALLOW_CONNECTIONS false CONNECTION LIMIT ${limit}`,
    [
      `REVOKE ALL ON DATABASE ${db} FROM PUBLIC`,
      `GRANT CONNECT, TEMPORARY ON DATABASE ${db} TO ${role}`,
      `ALTER DATABASE ${db} WITH ALLOW_CONNECTIONS true`,
    ].join(';\n'),
  ];
}

/**
 * A warm database: made ahead of demand, its login role unable to log in until it is claimed.
 * Same arrangement as a tenant database; the claim sets the password and limits.
 */
export function createWarmStatements(spec: Omit<TenantSpec, 'connectionLimit'>): string[] {
  return createTenantStatements({ ...spec, connectionLimit: 1, login: false });
}

/**
 * Hands a warm database to a tenant: login, its password, its plan's connection limit and
 * guardrails. One batch (simple query protocol): one implicit transaction, one round trip and
 * one commit on the pool, however many guardrails the plan sets.
 */
export function claimWarmBatch(spec: TenantSpec & { guardrails?: Guardrails | undefined }): string {
  const limit = connectionLimit(spec.connectionLimit);
  return [
    `ALTER ROLE ${quoteIdent(spec.dbUser)} WITH LOGIN CONNECTION LIMIT ${limit} PASSWORD ${quoteLiteral(spec.passwordVerifier)}`,
    `ALTER DATABASE ${quoteIdent(spec.dbName)} WITH CONNECTION LIMIT ${limit}`,
    ...(spec.guardrails ? guardrailStatements(spec.dbUser, spec.guardrails, { resetUnset: false }) : []),
  ].join(';\n');
}

/** A plan change on a live tenant: its connection limit and guardrails, one batch. */
export function planSettingsBatch(names: TenantNames, connectionLimitN: number, g: Guardrails): string {
  const limit = connectionLimit(connectionLimitN);
  return [
    `ALTER ROLE ${quoteIdent(names.dbUser)} WITH CONNECTION LIMIT ${limit}`,
    `ALTER DATABASE ${quoteIdent(names.dbName)} WITH CONNECTION LIMIT ${limit}`,
    ...guardrailStatements(names.dbUser, g, { resetUnset: true }),
  ].join(';\n');
}

const ifRoleExists = (name: string, statement: string) =>
  `DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = ${quoteLiteral(name)}) THEN ${statement}; END IF; END $$`;

/**
 * Release: stop new logins, drop the database (FORCE ends open sessions), drop both roles (a
 * tenant made before the owner role existed has only the login role). Every statement tolerates
 * "already gone", so a repeat is harmless.
 */
export function dropTenantStatements(names: TenantNames): string[] {
  const owner = ownerRoleOf(names);
  return [
    ifRoleExists(names.dbUser, `ALTER ROLE ${quoteIdent(names.dbUser)} NOLOGIN`),
    `DROP DATABASE IF EXISTS ${quoteIdent(names.dbName)} WITH (FORCE)`,
    `DROP ROLE IF EXISTS ${quoteIdent(names.dbUser)}, ${quoteIdent(owner)}`,
  ];
}

/**
 * What is left of a tenant: its database, its roles, or both (then as dropTenantStatements). The
 * roles go as in a release (no login first); every statement tolerates "already gone".
 */
export function dropLeftoverStatements(
  names: TenantNames,
  left: { database: boolean; role: boolean },
): string[] {
  const [noLogin, dropDatabase, dropRoles] = dropTenantStatements(names);
  return [
    ...(left.role ? [noLogin!] : []),
    ...(left.database ? [dropDatabase!] : []),
    ...(left.role ? [dropRoles!] : []),
  ];
}

/** Ends the login role's open sessions (not the caller's own). */
export function endSessionsStatement(dbUser: string): string {
  return `SELECT count(pg_terminate_backend(pid))::int AS ended FROM pg_stat_activity WHERE usename = ${quoteLiteral(dbUser)} AND pid <> pg_backend_pid()`;
}

/**
 * The owner's tables a restricted tenant may empty: plain and partitioned tables (a view's DELETE
 * runs its rules as the view's owner) where neither the table nor any table that references it or
 * inherits from it, however far down, has a rule (it runs as the table's owner) or a trigger of the
 * tenant's (PostgreSQL does not check EXECUTE when a trigger fires, so a SECURITY DEFINER one runs
 * as the owner). Those the tenant drops with tenantdb.drop_table instead.
 */
const EMPTIABLE_TABLES = (owner: string) => `
  WITH RECURSIVE reach(root, rel) AS (
    SELECT c.oid, c.oid FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
     WHERE r.rolname = ${quoteLiteral(owner)} AND c.relkind IN ('r', 'p')
    UNION
    SELECT reach.root, x.rel FROM reach JOIN (
      SELECT conrelid AS rel, confrelid AS ref FROM pg_constraint WHERE contype = 'f'
      UNION ALL SELECT inhrelid, inhparent FROM pg_inherits) x ON x.ref = reach.rel)
  SELECT root::regclass FROM reach GROUP BY root
  HAVING NOT bool_or(EXISTS (SELECT FROM pg_rewrite w WHERE w.ev_class = reach.rel)
                  OR EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = reach.rel AND NOT g.tgisinternal))`;

/** The large-object functions that create or grow one (not those that read or remove). */
const LARGE_OBJECT_WRITERS = [
  'lo_creat(integer)',
  'lo_create(oid)',
  'lo_from_bytea(oid, bytea)',
  'lowrite(integer, bytea)',
  'lo_put(oid, bigint, bytea)',
  'lo_truncate(integer, integer)',
  'lo_truncate64(integer, bigint)',
].join(', ');

/**
 * Restriction, run as the superuser **connected to the tenant's database** (the grants name its
 * schemas), as one batch. Then endSessionsStatement. Besides the membership it takes away what
 * the owner may have handed out while it could (INSERT/UPDATE granted to the login role or to
 * PUBLIC, EXECUTE on its SECURITY DEFINER functions), and hands the login role what gets a tenant
 * back under its quota: SELECT; DELETE, TRUNCATE and MAINTAIN (VACUUM FULL, PostgreSQL 17+) on
 * the tables it can empty without running anything of the owner's (EMPTIABLE_TABLES; MAINTAIN on
 * a materialized view would REFRESH it); and `tenantdb.drop_table(regclass)`, a function of the
 * superuser's that drops one of the owner's tables or views (DROP needs ownership, which the
 * login role must not have). Each restriction revokes before it grants, so a table that got a
 * rule or a trigger since an earlier one loses what that one granted.
 */
export function restrictBatch(names: TenantNames): string {
  const role = quoteIdent(names.dbUser);
  const owner = ownerRoleOf(names);
  return [
    `REVOKE ${quoteIdent(owner)} FROM ${role}`,
    `ALTER ROLE ${role} RESET role`,
    `REVOKE TEMPORARY ON DATABASE ${quoteIdent(names.dbName)} FROM ${role}`,
    `DO $$ DECLARE s name; f regprocedure; t regclass;
       v17 boolean := current_setting('server_version_num')::int >= 170000; BEGIN
       FOR s IN SELECT n.nspname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
                 WHERE r.rolname IN (${quoteLiteral(owner)}, 'pg_database_owner') LOOP
         EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA %I FROM ${role}, PUBLIC', s);
         IF v17 THEN
           EXECUTE format('REVOKE MAINTAIN ON ALL TABLES IN SCHEMA %I FROM ${role}, PUBLIC', s);
         END IF;
         EXECUTE format('REVOKE USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA %I FROM ${role}, PUBLIC', s);
         EXECUTE format('GRANT USAGE ON SCHEMA %I TO ${role}', s);
         EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO ${role}', s);
         EXECUTE format('GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO ${role}', s);
       END LOOP;
       FOR t IN ${EMPTIABLE_TABLES(owner)} LOOP
         EXECUTE format('GRANT DELETE, TRUNCATE ON %s TO ${role}', t);
         IF v17 THEN EXECUTE format('GRANT MAINTAIN ON %s TO ${role}', t); END IF;
       END LOOP;
       FOR f IN SELECT p.oid FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
                 WHERE r.rolname = ${quoteLiteral(owner)} AND p.prosecdef LOOP
         EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM ${role}, PUBLIC', f);
       END LOOP; END $$`,
    // Large objects need no privilege to create (any role may, and then write to its own): the
    // functions that make or grow one are the owner role's only, in this database.
    `REVOKE EXECUTE ON FUNCTION ${LARGE_OBJECT_WRITERS} FROM PUBLIC`,
    `GRANT EXECUTE ON FUNCTION ${LARGE_OBJECT_WRITERS} TO ${quoteIdent(owner)}`,
    'CREATE SCHEMA IF NOT EXISTS tenantdb',
    'REVOKE ALL ON SCHEMA tenantdb FROM PUBLIC',
    `CREATE OR REPLACE FUNCTION tenantdb.drop_table(target regclass) RETURNS void
       LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
       DECLARE kind "char";
       BEGIN
         SELECT c.relkind INTO kind FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
          WHERE c.oid = target AND r.rolname = ${quoteLiteral(owner)};
         IF kind IN ('r', 'p') THEN EXECUTE format('DROP TABLE %s', target);
         ELSIF kind = 'v' THEN EXECUTE format('DROP VIEW %s', target);
         ELSIF kind = 'm' THEN EXECUTE format('DROP MATERIALIZED VIEW %s', target);
         ELSE RAISE EXCEPTION 'tenantdb.drop_table drops your own tables and views only';
         END IF;
       END $f$`,
    // A schema or function of that name the tenant made itself (as the owner) becomes the
    // superuser's: a replaced function keeps its owner, and a definer function runs as it.
    'ALTER SCHEMA tenantdb OWNER TO CURRENT_USER',
    'ALTER FUNCTION tenantdb.drop_table(regclass) OWNER TO CURRENT_USER',
    'REVOKE ALL ON FUNCTION tenantdb.drop_table(regclass) FROM PUBLIC',
    `GRANT USAGE ON SCHEMA tenantdb TO ${role}`,
    `GRANT EXECUTE ON FUNCTION tenantdb.drop_table(regclass) TO ${role}`,
  ].join(';\n');
}

/** Lifting a restriction: runs on any database of the server, one batch. Then endSessionsStatement. */
export function liftBatch(names: TenantNames): string {
  const role = quoteIdent(names.dbUser);
  const owner = quoteIdent(ownerRoleOf(names));
  return [
    `GRANT ${owner} TO ${role}`,
    `ALTER ROLE ${role} SET role = ${owner}`,
    `GRANT TEMPORARY ON DATABASE ${quoteIdent(names.dbName)} TO ${role}`,
  ].join(';\n');
}

/** Suspension: no login (then endSessionsStatement). Resume: login again, same password. */
export const suspendStatement = (dbUser: string) => `ALTER ROLE ${quoteIdent(dbUser)} NOLOGIN`;
export const resumeStatement = (dbUser: string) => `ALTER ROLE ${quoteIdent(dbUser)} LOGIN`;

/**
 * Brings a tenant made before the owner role existed (its login role owns the database and its
 * objects) to the arrangement above. Run as the superuser connected to the tenant's database:
 * REASSIGN OWNED moves the objects there and the database itself. Idempotent: a repeat finds the
 * owner role, nothing owned by the login role, and the membership and default in place.
 */
export function migrateArrangementBatch(names: TenantNames): string {
  const role = quoteIdent(names.dbUser);
  const ownerName = ownerRoleOf(names);
  const owner = quoteIdent(ownerName);
  return [
    `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${quoteLiteral(ownerName)}) THEN CREATE ROLE ${owner} WITH NOLOGIN ${OWNER_ATTRIBUTES}; END IF; END $$`,
    `REASSIGN OWNED BY ${role} TO ${owner}`,
    `GRANT CONNECT, TEMPORARY ON DATABASE ${quoteIdent(names.dbName)} TO ${role}`,
    `ALTER ROLE ${role} NOINHERIT`,
    `GRANT ${owner} TO ${role}`,
    `ALTER ROLE ${role} SET role = ${owner}`,
  ].join(';\n');
}

/** What the server says of a tenant's access: read on any database of the server. */
export interface AccessOnServer {
  /** The login role exists. */
  exists: boolean;
  canLogin: boolean;
  /** The owner role exists (arrangement 2). */
  hasOwner: boolean;
  /** The login role is a member of the owner role: not restricted. */
  member: boolean;
}

export function accessStateQuery(names: TenantNames): { text: string; values: string[] } {
  return {
    text: `SELECT r.rolcanlogin AS can_login, o.oid IS NOT NULL AS has_owner,
                  EXISTS (SELECT FROM pg_auth_members m WHERE m.roleid = o.oid AND m.member = r.oid) AS member
             FROM pg_roles r LEFT JOIN pg_roles o ON o.rolname = $2
            WHERE r.rolname = $1`,
    values: [names.dbUser, ownerRoleOf(names)],
  };
}

/** A plan's guardrail columns as Guardrails (nulls: the server default, nothing set). */
export function guardrailsOf(plan: {
  statement_timeout_ms: number | null;
  idle_in_transaction_timeout_ms: number | null;
  temp_file_limit_mb: number | null;
  work_mem_mb: number | null;
}): Guardrails {
  return {
    statementTimeoutMs: plan.statement_timeout_ms,
    idleInTransactionTimeoutMs: plan.idle_in_transaction_timeout_ms,
    tempFileLimitMb: plan.temp_file_limit_mb,
    workMemMb: plan.work_mem_mb,
  };
}

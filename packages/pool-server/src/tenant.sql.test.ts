import { describe, expect, it } from 'vitest';
import {
  generateTenantNames,
  quoteIdent,
  quoteLiteral,
  setPasswordStatement,
  tenantOf,
  UnsafeIdentifierError,
} from './tenant.sql';
import {
  claimWarmBatch,
  createTenantStatements,
  createWarmStatements,
  dropLeftoverStatements,
  dropTenantStatements,
  guardrailStatements,
} from './tenant-access.sql';

describe('identifiers', () => {
  it('accepts only what tenantdb generates', () => {
    expect(quoteIdent('tdb_abc_u')).toBe('"tdb_abc_u"');
    for (const bad of ['', 'A', '1abc', 'a-b', 'a"b', "a'b", 'a;drop', 'a b', 'é', `a${'b'.repeat(63)}`]) {
      expect(() => quoteIdent(bad)).toThrow(UnsafeIdentifierError);
    }
  });

  it('generated names are valid, distinct and carry the tenant prefix', () => {
    const names = Array.from({ length: 500 }, generateTenantNames);
    expect(new Set(names.map((n) => n.dbName)).size).toBe(500);
    for (const n of names) {
      expect(n.dbName).toMatch(/^tdb_[a-z2-7]{26}$/);
      expect(n.dbUser).toBe(`${n.dbName}_u`);
    }
  });

  it('literals double single quotes and refuse NUL', () => {
    expect(quoteLiteral("it's")).toBe("'it''s'");
    expect(() => quoteLiteral('a\0b')).toThrow();
  });
});

describe('tenant DDL', () => {
  const spec = {
    dbName: 'tdb_x',
    dbUser: 'tdb_x_u',
    passwordVerifier: 'SCRAM-SHA-256$4096:s$k:v',
    connectionLimit: 20,
  };

  it('creates the owner role and the login role as its member, a closed database owned by the owner, revokes PUBLIC, then opens it', () => {
    const [roles, database, isolation] = createTenantStatements(spec);
    expect(createTenantStatements(spec)).toHaveLength(3);
    expect(roles!.split(';\n')).toEqual([
      'CREATE ROLE "tdb_x_o" WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT',
      `CREATE ROLE "tdb_x_u" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT 20 PASSWORD 'SCRAM-SHA-256$4096:s$k:v' IN ROLE "tdb_x_o"`,
      'ALTER ROLE "tdb_x_u" SET role = "tdb_x_o"',
    ]);
    expect(database).toBe(
      'CREATE DATABASE "tdb_x" WITH OWNER "tdb_x_o" ALLOW_CONNECTIONS false CONNECTION LIMIT 20',
    );
    expect(isolation!.split(';\n')).toEqual([
      'REVOKE ALL ON DATABASE "tdb_x" FROM PUBLIC',
      'GRANT CONNECT, TEMPORARY ON DATABASE "tdb_x" TO "tdb_x_u"',
      'ALTER DATABASE "tdb_x" WITH ALLOW_CONNECTIONS true',
    ]);
    expect(createWarmStatements(spec)[0]).toContain('CREATE ROLE "tdb_x_u" WITH NOLOGIN ');
  });

  it('sets the guardrails a plan has, in the same batch, and resets the others on a plan change', () => {
    const g = {
      statementTimeoutMs: 30_000,
      idleInTransactionTimeoutMs: null,
      tempFileLimitMb: 64,
      workMemMb: null,
    };
    expect(guardrailStatements('tdb_x_u', g, { resetUnset: false })).toEqual([
      `ALTER ROLE "tdb_x_u" SET statement_timeout = '30000ms'`,
      `ALTER ROLE "tdb_x_u" SET temp_file_limit = '64MB'`,
    ]);
    expect(guardrailStatements('tdb_x_u', g, { resetUnset: true })).toContain(
      'ALTER ROLE "tdb_x_u" RESET work_mem',
    );
    expect(claimWarmBatch({ ...spec, guardrails: g }).split(';\n')).toHaveLength(4);
    expect(claimWarmBatch(spec).split(';\n')).toHaveLength(2);
  });

  it('never carries a plaintext password and rejects absurd limits', () => {
    expect(createTenantStatements(spec).join('\n')).toContain("PASSWORD 'SCRAM-SHA-256$4096:s$k:v'");
    expect(() => createTenantStatements({ ...spec, connectionLimit: 0 })).toThrow();
    expect(() => createTenantStatements({ ...spec, dbName: 'x"; DROP DATABASE postgres; --' })).toThrow();
  });

  it('drops idempotently and sets passwords by verifier', () => {
    expect(dropTenantStatements(spec)).toEqual([
      `DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'tdb_x_u') THEN ALTER ROLE "tdb_x_u" NOLOGIN; END IF; END $$`,
      'DROP DATABASE IF EXISTS "tdb_x" WITH (FORCE)',
      'DROP ROLE IF EXISTS "tdb_x_u", "tdb_x_o"',
    ]);
    expect(setPasswordStatement('tdb_x_u', 'SCRAM-SHA-256$v')).toBe(
      `ALTER ROLE "tdb_x_u" WITH PASSWORD 'SCRAM-SHA-256$v'`,
    );
  });
});

describe('leftovers of a tenant', () => {
  it('maps a generated database or role name to its tenant, and nothing else', () => {
    const names = generateTenantNames();
    expect(tenantOf(names.dbName)).toEqual({ names, kind: 'database' });
    expect(tenantOf(names.dbUser)).toEqual({ names, kind: 'role' });
    expect(tenantOf(`${names.dbName}_o`)).toEqual({ names, kind: 'role' });
    const suffix = 'a'.repeat(26);
    for (const other of [
      'tdb_orphandb',
      'tdb_orphanrole_u',
      `tdb_${suffix}_x`,
      `tdb_${suffix}a`,
      `tdb_${'a'.repeat(25)}1`,
      `tdb_${suffix}_u_u`,
      `xtdb_${suffix}`,
      'postgres',
    ]) {
      expect(tenantOf(other), other).toBeUndefined();
    }
  });

  it('drops only the half that is left, or both as a release does', () => {
    const names = { dbName: 'tdb_x', dbUser: 'tdb_x_u' };
    const [noLogin, dropDatabase, dropRole] = dropTenantStatements(names);
    expect(dropLeftoverStatements(names, { database: true, role: true })).toEqual(
      dropTenantStatements(names),
    );
    expect(dropLeftoverStatements(names, { database: true, role: false })).toEqual([dropDatabase]);
    expect(dropLeftoverStatements(names, { database: false, role: true })).toEqual([noLogin, dropRole]);
    expect(dropLeftoverStatements(names, { database: false, role: false })).toEqual([]);
  });
});

// The tenant access arrangement on a real server (tenant-access.sql.ts): a restricted tenant
// cannot write by any means of its own (SET default_transaction_read_only = off, RESET ROLE, SET
// ROLE, GRANT to itself) and can still read, delete, truncate, vacuum and drop; lifting gives its
// writes back; suspension ends sessions and refuses logins until resumed with the same password;
// guardrails hold where PostgreSQL lets a superuser bound them; a legacy tenant is migrated.
import { randomBytes } from 'node:crypto';
import { createSecretBox, generatePassword, scramSha256Verifier } from '@tenantdb/secrets';
import { type RunningPostgres, startPostgres } from '@tenantdb/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createPoolConnections,
  createTenantAccess,
  createTenantOps,
  generateTenantNames,
  type PoolConnections,
  type PoolServerTarget,
  quoteIdent,
  quoteLiteral,
  type TenantNames,
} from '../src';

let server: RunningPostgres;
let target: PoolServerTarget;
let connections: PoolConnections;

beforeAll(async () => {
  server = await startPostgres({ password: generatePassword(), settings: { fsync: 'off' } });
  const secrets = createSecretBox([{ id: 'k1', key: randomBytes(32) }]);
  target = {
    id: 'pool-1',
    host: server.host,
    port: server.port,
    admin_user: server.user,
    admin_password_enc: secrets.encrypt(server.password, 'pool-1'),
    admin_database: 'postgres',
  };
  connections = createPoolConnections(secrets);
});
afterAll(async () => {
  await connections?.close();
  await server?.destroy();
});

const ops = () => createTenantOps(connections);
const access = () => createTenantAccess(connections);

async function login(t: TenantNames, password: string): Promise<pg.Client> {
  const client = new pg.Client({
    host: server.host,
    port: server.port,
    database: t.dbName,
    user: t.dbUser,
    password,
    connectionTimeoutMillis: 5_000,
  });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** The SQLSTATE a statement fails with, or 'ok'. */
async function outcome(client: pg.Client, text: string): Promise<string> {
  try {
    await client.query(text);
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

async function newTenant(guardrails?: Parameters<ReturnType<typeof ops>['create']>[1]['guardrails']) {
  const t = generateTenantNames();
  const password = generatePassword();
  await ops().create(target, { ...t, password, connectionLimit: 5, guardrails });
  return { t, password };
}

describe('the arrangement of a new tenant', () => {
  it('sessions run as the owner role; the login role owns nothing and can create nothing as itself', async () => {
    const { t, password } = await newTenant();
    const c = await login(t, password);
    try {
      const who = await c.query('SELECT current_user AS cur, session_user AS ses');
      expect(who.rows[0]).toEqual({ cur: `${t.dbName}_o`, ses: t.dbUser });
      await c.query('CREATE TABLE t (id int)');
      const owner = await c.query(`SELECT tableowner FROM pg_tables WHERE tablename = 't'`);
      expect(owner.rows[0].tableowner).toBe(`${t.dbName}_o`);
      await c.query('SET ROLE NONE');
      expect(await outcome(c, 'CREATE TABLE mine (id int)')).toBe('42501');
      expect(await outcome(c, 'CREATE SCHEMA mine')).toBe('42501');
      await c.query('RESET ROLE');
      expect((await c.query('SELECT current_user AS cur')).rows[0].cur).toBe(`${t.dbName}_o`);
    } finally {
      await c.end();
    }
  });
});

describe('restriction', () => {
  it('refuses writes whatever the tenant does, allows reads, deletes, truncates, vacuum and drop, and is lifted', async () => {
    const { t, password } = await newTenant();
    const setup = await login(t, password);
    await setup.query('CREATE TABLE big (id int, pad text)');
    await setup.query('CREATE TABLE other (id int)');
    await setup.query('CREATE TABLE gone (id int)');
    await setup.query(`INSERT INTO big SELECT g, 'x' FROM generate_series(1, 100) g`);
    // What a tenant might prepare while it can: grants to itself and to PUBLIC, a definer function.
    await setup.query(`GRANT INSERT, UPDATE ON big TO ${quoteIdent(t.dbUser)}, PUBLIC`);
    await setup.query(
      `CREATE FUNCTION sneak() RETURNS void LANGUAGE sql SECURITY DEFINER AS 'INSERT INTO big VALUES (0, ''y'')'`,
    );
    await setup.query(`GRANT EXECUTE ON FUNCTION sneak() TO PUBLIC`);
    // and a schema and function in the place of tenantdb's own
    await setup.query('CREATE SCHEMA tenantdb');
    await setup.query(
      `CREATE FUNCTION tenantdb.drop_table(target regclass) RETURNS void LANGUAGE sql SECURITY DEFINER AS 'INSERT INTO big VALUES (-1, ''sneak'')'`,
    );
    const longLived = setup; // stays open across the restriction

    const result = await access().apply(target, t, { restricted: true, suspended: false });
    expect(result).toMatchObject({ kind: 'applied', changed: ['restricted'] });
    expect(result.kind === 'applied' && result.sessionsEnded).toBeGreaterThanOrEqual(1);
    expect(await outcome(longLived, 'SELECT 1')).not.toBe('ok'); // ended: it ran as the owner
    await longLived.end().catch(() => {});
    expect(await access().read(target, t)).toEqual({
      exists: true,
      canLogin: true,
      hasOwner: true,
      member: false,
    });

    const c = await login(t, password);
    try {
      expect((await c.query('SELECT current_user AS cur')).rows[0].cur).toBe(t.dbUser);
      expect(await outcome(c, `INSERT INTO big VALUES (1, 'y')`)).toBe('42501');
      expect(await outcome(c, 'UPDATE big SET pad = pad')).toBe('42501');
      expect(await outcome(c, 'CREATE TABLE more (id int)')).toBe('42501');
      expect(await outcome(c, 'CREATE TEMP TABLE tmp (id int)')).toBe('42501');
      await c.query('SET default_transaction_read_only = off');
      expect(await outcome(c, `INSERT INTO big VALUES (1, 'y')`)).toBe('42501');
      await c.query('RESET ROLE');
      expect(await outcome(c, `INSERT INTO big VALUES (1, 'y')`)).toBe('42501');
      expect(await outcome(c, `SET ROLE ${quoteIdent(`${t.dbName}_o`)}`)).toBe('42501');
      // a GRANT of its own grants nothing (it holds no grant option) and writes stay refused
      await outcome(c, `GRANT INSERT ON big TO ${quoteIdent(t.dbUser)}`);
      await outcome(c, `GRANT ${quoteIdent(`${t.dbName}_o`)} TO ${quoteIdent(t.dbUser)}`);
      expect(await outcome(c, `INSERT INTO big VALUES (1, 'y')`)).toBe('42501');
      expect(await outcome(c, 'SELECT sneak()')).toBe('42501');
      // It may store a role default for itself (PostgreSQL lets a role set its own user-settable
      // defaults), but at login the membership is checked and the default is ignored.
      await outcome(c, `ALTER ROLE ${quoteIdent(t.dbUser)} SET role = ${quoteLiteral(`${t.dbName}_o`)}`);
      const again = await login(t, password);
      expect((await again.query('SELECT current_user AS cur')).rows[0].cur).toBe(t.dbUser);
      expect(await outcome(again, `INSERT INTO big VALUES (1, 'y')`)).toBe('42501');
      await again.end();

      expect((await c.query('SELECT count(*)::int AS n FROM big')).rows[0].n).toBe(100);
      expect(await outcome(c, 'DELETE FROM big WHERE id <= 10')).toBe('ok');
      expect(await outcome(c, 'VACUUM FULL big')).toBe('ok');
      expect(await outcome(c, 'TRUNCATE other')).toBe('ok');
      expect(await outcome(c, `SELECT tenantdb.drop_table('gone')`)).toBe('ok');
      expect((await c.query('SELECT count(*)::int AS n FROM big WHERE id = -1')).rows[0].n).toBe(0);
      expect(await outcome(c, "SELECT tenantdb.drop_table('pg_catalog.pg_class')")).toBe('P0001');
      expect(
        (await c.query(`SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'gone'`)).rows[0].n,
      ).toBe(0);
    } finally {
      await c.end();
    }

    // a repeat changes nothing
    expect(await access().apply(target, t, { restricted: true, suspended: false })).toMatchObject({
      changed: [],
    });

    const lifted = await access().apply(target, t, { restricted: false, suspended: false });
    expect(lifted).toMatchObject({ kind: 'applied', changed: ['lifted'] });
    const after = await login(t, password);
    try {
      expect(await outcome(after, `INSERT INTO big VALUES (1, 'y')`)).toBe('ok');
      expect(await outcome(after, 'CREATE TABLE more (id int)')).toBe('ok');
      expect((await after.query('SELECT current_user AS cur')).rows[0].cur).toBe(`${t.dbName}_o`);
    } finally {
      await after.end();
    }
  });
});

describe('restriction against what the owner prepared', () => {
  it('no rule, trigger, cascade, large object or materialized view writes for a restricted tenant', async () => {
    const { t, password } = await newTenant();
    const setup = await login(t, password);
    // Each of these ran, before this arrangement closed them, as the owner (or as nobody's
    // privilege at all): a DELETE or TRUNCATE the tenant may still make wrote through them.
    await setup.query(`CREATE TABLE log (v text);
      CREATE TABLE ruled (id int);
      CREATE RULE r AS ON DELETE TO ruled DO ALSO INSERT INTO log VALUES ('rule');
      CREATE FUNCTION definer_log() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS
        $f$ BEGIN INSERT INTO log VALUES (TG_TABLE_NAME || ' ' || TG_OP); RETURN NULL; END $f$;
      CREATE FUNCTION invoker_log() RETURNS trigger LANGUAGE plpgsql AS
        $f$ BEGIN INSERT INTO log VALUES (TG_TABLE_NAME || ' ' || TG_OP); RETURN NULL; END $f$;
      CREATE TABLE triggered (id int);
      CREATE TRIGGER d AFTER DELETE ON triggered FOR EACH ROW EXECUTE FUNCTION definer_log();
      CREATE TRIGGER tr AFTER TRUNCATE ON triggered FOR EACH STATEMENT EXECUTE FUNCTION definer_log();
      CREATE TABLE parent (id int PRIMARY KEY);
      CREATE TABLE child (pid int REFERENCES parent ON DELETE CASCADE);
      CREATE TRIGGER c AFTER DELETE ON child FOR EACH ROW EXECUTE FUNCTION invoker_log();
      CREATE TABLE plain (id int);
      CREATE MATERIALIZED VIEW mv AS SELECT g FROM generate_series(1, 10000) g WITH NO DATA;
      INSERT INTO ruled VALUES (1); INSERT INTO triggered VALUES (1); INSERT INTO parent VALUES (1);
      INSERT INTO child VALUES (1); INSERT INTO plain VALUES (1);`);
    await setup.end();
    await access().apply(target, t, { restricted: true, suspended: false });

    const c = await login(t, password);
    try {
      expect((await c.query('SELECT current_user AS cur')).rows[0].cur).toBe(t.dbUser);
      for (const statement of [
        'DELETE FROM ruled',
        'DELETE FROM triggered',
        'TRUNCATE triggered',
        'DELETE FROM parent',
        'TRUNCATE parent CASCADE',
        "SELECT lo_from_bytea(0, 'x')",
        'SELECT lo_create(0)',
        'SELECT lo_creat(-1)',
        'REFRESH MATERIALIZED VIEW mv',
      ])
        expect(await outcome(c, statement), statement).toBe('42501');
      expect((await c.query('SELECT count(*)::int AS n FROM log')).rows[0].n).toBe(0);
      expect((await c.query('SELECT count(*)::int AS n FROM pg_largeobject_metadata')).rows[0].n).toBe(0);
      expect((await c.query('SELECT count(*)::int AS n FROM ruled')).rows[0].n).toBe(1);
      // What has no such path stays as before: delete, truncate, and drop for the rest.
      expect(await outcome(c, 'DELETE FROM plain')).toBe('ok');
      expect(await outcome(c, 'TRUNCATE plain')).toBe('ok');
      for (const table of ['ruled', 'triggered', 'child', 'parent', 'mv'])
        expect(await outcome(c, `SELECT tenantdb.drop_table('${table}')`), table).toBe('ok');
      expect((await c.query('SELECT count(*)::int AS n FROM log')).rows[0].n).toBe(0);
    } finally {
      await c.end();
    }

    // Lifted: the owner's sessions have all of it again, large objects included.
    await access().apply(target, t, { restricted: false, suspended: false });
    const after = await login(t, password);
    try {
      expect(await outcome(after, "SELECT lo_from_bytea(0, 'x')")).toBe('ok');
      expect(await outcome(after, 'INSERT INTO plain VALUES (2)')).toBe('ok');
    } finally {
      await after.end();
    }
  });
});

describe('suspension', () => {
  it('ends open sessions and refuses logins; resume lets the same password in, data intact', async () => {
    const { t, password } = await newTenant();
    const c = await login(t, password);
    await c.query('CREATE TABLE keep (v text)');
    await c.query(`INSERT INTO keep VALUES ('still here')`);
    const result = await access().apply(target, t, { restricted: false, suspended: true });
    expect(result).toMatchObject({ kind: 'applied', changed: ['suspended'] });
    expect(await outcome(c, 'SELECT 1')).not.toBe('ok');
    await c.end().catch(() => {});
    await expect(login(t, password)).rejects.toMatchObject({ code: '28000' });

    expect(await access().apply(target, t, { restricted: false, suspended: false })).toMatchObject({
      changed: ['resumed'],
    });
    const back = await login(t, password);
    try {
      expect((await back.query('SELECT v FROM keep')).rows).toEqual([{ v: 'still here' }]);
    } finally {
      await back.end();
    }
  });

  it('a tenant that is gone is reported, not an error', async () => {
    expect(
      await access().apply(target, generateTenantNames(), { restricted: true, suspended: true }),
    ).toEqual({
      kind: 'gone',
    });
  });
});

describe('guardrails', () => {
  it('applies the plan values to new sessions; temp_file_limit cannot be raised by the tenant, the others can', async () => {
    const { t, password } = await newTenant({
      statementTimeoutMs: 1500,
      idleInTransactionTimeoutMs: 60_000,
      tempFileLimitMb: 8,
      workMemMb: 2,
    });
    const c = await login(t, password);
    try {
      const shown = async (name: string) => (await c.query(`SHOW ${name}`)).rows[0][name];
      expect(await shown('statement_timeout')).toBe('1500ms');
      expect(await shown('idle_in_transaction_session_timeout')).toBe('1min');
      expect(await shown('temp_file_limit')).toBe('8MB');
      expect(await shown('work_mem')).toBe('2MB');
      expect(await outcome(c, 'SELECT pg_sleep(3)')).toBe('57014'); // statement_timeout
      expect(await outcome(c, `SET temp_file_limit = '1GB'`)).toBe('42501');
      expect(await outcome(c, 'SET ROLE NONE')).toBe('ok');
      expect(await outcome(c, `SET temp_file_limit = '1GB'`)).toBe('42501');
      expect(await outcome(c, `ALTER ROLE ${quoteIdent(t.dbUser)} RESET temp_file_limit`)).toBe('42501');
      expect(await outcome(c, `ALTER ROLE ${quoteIdent(t.dbUser)} SET temp_file_limit = '1GB'`)).toBe(
        '42501',
      );
      // PostgreSQL gives no bound for these: the tenant may change them for its own session
      expect(await outcome(c, `SET statement_timeout = 0`)).toBe('ok');
      expect(await outcome(c, `SET idle_in_transaction_session_timeout = 0`)).toBe('ok');
      expect(await outcome(c, `SET work_mem = '64MB'`)).toBe('ok');
    } finally {
      await c.end();
    }

    await access().applyPlan(target, t, {
      connectionLimit: 7,
      guardrails: {
        statementTimeoutMs: null,
        idleInTransactionTimeoutMs: null,
        tempFileLimitMb: 16,
        workMemMb: null,
      },
    });
    const d = await login(t, password);
    try {
      expect((await d.query('SHOW temp_file_limit')).rows[0].temp_file_limit).toBe('16MB');
      expect((await d.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('0');
      const limits = await d.query(
        `SELECT (SELECT rolconnlimit FROM pg_roles WHERE rolname = session_user) AS r,
                (SELECT datconnlimit FROM pg_database WHERE datname = current_database()) AS d`,
      );
      expect(limits.rows[0]).toEqual({ r: 7, d: 7 });
    } finally {
      await d.end();
    }
  });
});

describe('tenants made before the owner role', () => {
  it('are migrated: their objects move to the owner, writes keep working, and restriction then holds', async () => {
    const t = generateTenantNames();
    const password = generatePassword();
    const verifier = await scramSha256Verifier(password);
    // The arrangement before issue 17: the login role owns the database.
    const admin = new pg.Client({ connectionString: server.url() });
    await admin.connect();
    try {
      await admin.query(
        `CREATE ROLE ${quoteIdent(t.dbUser)} WITH LOGIN NOINHERIT CONNECTION LIMIT 5 PASSWORD ${quoteLiteral(verifier)}`,
      );
      await admin.query(`CREATE DATABASE ${quoteIdent(t.dbName)} OWNER ${quoteIdent(t.dbUser)}`);
      await admin.query(`REVOKE ALL ON DATABASE ${quoteIdent(t.dbName)} FROM PUBLIC`);
    } finally {
      await admin.end();
    }
    const old = await login(t, password);
    await old.query('CREATE TABLE legacy (id int)');
    await old.query('INSERT INTO legacy VALUES (1)');
    await old.end();

    expect(await access().migrate(target, t)).toBe('migrated');
    expect(await access().migrate(target, t)).toBe('already');
    const c = await login(t, password);
    try {
      const owner = await c.query(`SELECT tableowner FROM pg_tables WHERE tablename = 'legacy'`);
      expect(owner.rows[0].tableowner).toBe(`${t.dbName}_o`);
      expect(await outcome(c, 'INSERT INTO legacy VALUES (2)')).toBe('ok');
    } finally {
      await c.end();
    }
    await access().apply(target, t, { restricted: true, suspended: false });
    const r = await login(t, password);
    try {
      expect(await outcome(r, 'INSERT INTO legacy VALUES (3)')).toBe('42501');
      expect((await r.query('SELECT count(*)::int AS n FROM legacy')).rows[0].n).toBe(2);
    } finally {
      await r.end();
    }
    await ops().drop(target, t);
    expect(await access().read(target, t)).toMatchObject({ exists: false });
  });
});

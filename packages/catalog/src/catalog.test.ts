// database-service's catalog: its migrations go down to nothing and up again, a cut connection
// does not take the process down, and on a large fleet
// the reservation reads pools from the placement index in order instead of sorting every
// placeable pool (the plan is asserted, not a time); a second live row for an instance is a typed
// duplicate.

import { cloneCatalog, planNodes, planOf } from '@tenantdb/testkit';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type CatalogDb, createCatalogDb } from './db';
import { DATABASE_SERVICE_MIGRATIONS, migrateDown, migrateToLatest } from './migrate';
import { createAuditRepo } from './repos/audit.repo';
import { createReservationsRepo, reserveSharedStatement } from './repos/reservations.repo';
import { createServersRepo } from './repos/servers.repo';
import { createTenantDatabasesRepo } from './repos/tenant-databases.repo';

let catalog: Awaited<ReturnType<typeof cloneCatalog>>;
let db: CatalogDb;
beforeAll(async () => {
  catalog = await cloneCatalog(inject('catalogAdminUrl'), inject('catalogTemplate'));
  db = createCatalogDb({ url: catalog.url, poolSize: 2 });
});
afterAll(async () => {
  await db?.destroy();
  await catalog?.drop();
});

const tables = async () =>
  (
    await sql<{ table_name: string }>`SELECT table_name FROM information_schema.tables
      WHERE table_schema = 'database_service' AND table_name NOT LIKE 'kysely%' ORDER BY table_name`.execute(
      db,
    )
  ).rows.map((r) => r.table_name);

describe('database-service catalog', () => {
  it('migrations go down one by one to nothing and up again', async () => {
    const all = Object.keys(DATABASE_SERVICE_MIGRATIONS.migrations);
    const before = await tables();
    expect(before).toEqual([
      'api_keys',
      'audit_events',
      'backups',
      'db_servers',
      'fleet_ca',
      'plans',
      'server_certificates',
      'tenant_databases',
      'tenant_events',
      'tenant_moves',
      'tenant_restores',
    ]);
    for (const name of [...all].reverse()) expect(await migrateDown(db)).toEqual([`Down ${name}`]);
    expect(await tables()).toEqual([]);
    expect(await migrateToLatest(db)).toEqual(all.map((name) => `Up ${name}`));
    expect(await tables()).toEqual(before);
  });

  it('a held session whose connection is cut errors on its next query, and the process lives on', async () => {
    const other = createCatalogDb({ url: catalog.url, poolSize: 1 });
    try {
      const failure = await db.connection().execute(async (conn) => {
        const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(conn);
        // What a catalog restart does to every session: the server ends it while the client is idle.
        await sql`SELECT pg_terminate_backend(${rows[0]!.pid})`.execute(other);
        await new Promise((r) => setTimeout(r, 200)); // the client sees the socket close: an 'error' event
        return sql`SELECT 1`.execute(conn).then(
          () => undefined,
          (err: Error) => err,
        );
      });
      expect(failure).toBeInstanceOf(Error);
      const { rows } = await sql<{ one: number }>`SELECT 1 AS one`.execute(db);
      expect(rows[0]!.one).toBe(1);
    } finally {
      await other.destroy();
    }
  });

  it.each(['pack', 'spread'] as const)(
    'on 5,000 pools the %s reservation takes its pool from an index, sorting no server',
    async (strategy) => {
      await sql`
      INSERT INTO db_servers (name, driver, server_type, max_instances, current_instances, status, health_status,
                              host, port, priority)
      SELECT 'scale-' || ${strategy}::text || '-' || g, 'local', 'shared', 100, g % 90,
             CASE WHEN g % 10 = 0 THEN 'cordoned' ELSE 'active' END, 'healthy', '127.0.0.1', 20000 + g % 40000, g % 3
        FROM generate_series(1, 5000) g`.execute(db);
      await sql`ANALYZE db_servers`.execute(db);

      const statement = reserveSharedStatement(
        {
          id: crypto.randomUUID(),
          instance_id: crypto.randomUUID(),
          customer_id: crypto.randomUUID(),
          plan_tier: 'standard',
          connection_limit: 20,
          password_enc: 'v2.k1.never-stored',
          db_name: 'tdb_plan_check',
          db_user: 'tdb_plan_check',
          actor: 'test',
          request_id: 'plan-check',
        },
        { strategy, skipLocked: true },
      ).compile(db);
      const nodes = await planOf(db, statement);
      expect(nodes.some((n) => n['Index Name'] === `db_servers_placement_${strategy}`)).toBe(true);
      const sortsOfServers = nodes.filter(
        (n) => n['Node Type'] === 'Sort' && planNodes(n).some((c) => c['Relation Name'] === 'db_servers'),
      );
      expect(sortsOfServers).toEqual([]);
      await sql`DELETE FROM db_servers WHERE name LIKE 'scale-%'`.execute(db);
    },
  );
});

// The repositories answer a second live row for an instance as a typed `duplicate` (the unique
// index tenant_databases_live_instance), writing nothing, instead of an error to match by name.
describe('a second live row for an instance', () => {
  const request = (instanceId: string, n: number) => ({
    id: crypto.randomUUID(),
    instance_id: instanceId,
    customer_id: crypto.randomUUID(),
    plan_tier: 'standard',
    connection_limit: 20,
    password_enc: 'v2.k1.never-stored',
    db_name: `tdb_dup_${n}_${instanceId.slice(0, 8)}`,
    db_user: `tdb_dup_${n}_${instanceId.slice(0, 8)}_u`,
    actor: 'test',
    request_id: `dup-${n}`,
  });
  const pool = async (name: string) =>
    createServersRepo(db).insert({
      name,
      driver: 'external',
      server_type: 'shared',
      max_instances: 10,
      status: 'active',
      health_status: 'healthy',
      host: '127.0.0.1',
      port: 1,
      priority: -100,
    });
  const slots = async (id: string) => (await createServersRepo(db).findById(id))!.current_instances;

  it('reserveShared: duplicate, with no slot taken and no audit event', async () => {
    const server = (await pool(`dup-shared-${crypto.randomUUID().slice(0, 8)}`))!;
    const repo = createReservationsRepo(db);
    const instanceId = crypto.randomUUID();
    const first = await repo.reserveShared(request(instanceId, 1), { strategy: 'pack', skipLocked: false });
    expect(first).toMatchObject({ kind: 'reserved', warm: false, server: { id: server.id } });
    expect(await slots(server.id)).toBe(1);
    const again = await repo.reserveShared(request(instanceId, 2), { strategy: 'pack', skipLocked: false });
    expect(again).toEqual({ kind: 'duplicate' });
    expect(await slots(server.id)).toBe(1);
    const audited = await db
      .selectFrom('audit_events')
      .select('request_id')
      .where('instance_id', '=', instanceId)
      .execute();
    expect(audited).toEqual([{ request_id: 'dup-1' }]);
  });

  it('insert: duplicate without aborting the transaction; other unique violations still throw', async () => {
    const server = (await pool(`dup-insert-${crypto.randomUUID().slice(0, 8)}`))!;
    const tenants = createTenantDatabasesRepo(db);
    const instanceId = crypto.randomUUID();
    const row = (n: number) => {
      const { actor: _a, request_id: _r, ...fields } = request(instanceId, n);
      return { ...fields, db_server_id: server.id, status: 'creating' as const };
    };
    const answers = await db.transaction().execute(async (trx) => {
      const first = await tenants.insert(row(1), trx);
      const second = await tenants.insert(row(2), trx);
      // the transaction is still usable: this read runs and the commit keeps the first row
      const live = await tenants.findLiveByInstance(instanceId, trx);
      return { first, second, live };
    });
    expect(answers.first).toMatchObject({
      kind: 'inserted',
      row: { instance_id: instanceId, db_name: row(1).db_name },
    });
    expect(answers.second).toEqual({ kind: 'duplicate' });
    expect(answers.live?.db_name).toBe(row(1).db_name);
    expect((await tenants.findLiveByInstance(instanceId))?.db_name).toBe(row(1).db_name);

    // A released row is not live: the instance may have a new one.
    await tenants.transition(answers.live!.id, ['creating'], 'released');
    expect(await tenants.insert(row(3))).toMatchObject({ kind: 'inserted' });
    // The same db_name on the same server (another unique index) is an error, not a duplicate.
    await expect(
      tenants.insert({ ...row(3), instance_id: crypto.randomUUID(), db_user: 'other_u' }),
    ).rejects.toMatchObject({ code: '23505', constraint: 'tenant_databases_server_name' });
  });
});

describe('audited writes', () => {
  const named = (name: string) => db.selectFrom('db_servers').select('id').where('name', '=', name).execute();
  const events = (action: string) =>
    db.selectFrom('audit_events').select('db_server_id').where('action', '=', action).execute();
  const newServer = (name: string) =>
    ({ name, driver: 'external', server_type: 'shared', max_instances: 1, status: 'cordoned' }) as const;

  it('records the event with the write, nothing when the write matched nothing, and neither when the event fails', async () => {
    const audit = createAuditRepo(db);
    const servers = createServersRepo(db);
    const row = await audit.audited(
      (trx) => servers.insert(newServer('audited-1'), trx),
      (inserted) => ({ actor: 'test', action: 'test.audited', db_server_id: inserted.id }),
    );
    expect(await events('test.audited')).toEqual([{ db_server_id: row!.id }]);

    const none = await audit.audited(
      (trx) => servers.updateIfStatus(row!.id, ['active'], { priority: 7 }, trx),
      () => ({ actor: 'test', action: 'test.audited', db_server_id: row!.id }),
    );
    expect(none).toBeUndefined();
    expect(await events('test.audited')).toHaveLength(1);

    await expect(
      audit.audited(
        (trx) => servers.insert(newServer('audited-2'), trx),
        // actor is NOT NULL: the event fails, and the write goes with it.
        () => ({ actor: null as unknown as string, action: 'test.audited' }),
      ),
    ).rejects.toThrow();
    expect(await named('audited-2')).toEqual([]);
  });
});

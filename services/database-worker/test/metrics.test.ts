// What a scrape costs on a large catalog: tenantdb_catalog_drift reads the drifted servers from
// their partial index and counts no tenant row, and tenantdb_warm_databases counts the warm rows
// from theirs, so neither cost follows the fleet or the tenant history (plans are asserted, not
// times). The drift series themselves are in health.test.ts.
import { type CatalogDb, createCatalogDb, driftedServers, warmReady } from '@tenantdb/catalog';
import { cloneCatalog, planOf } from '@tenantdb/testkit';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';

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

it('on 5,000 servers, a scrape reads the drifted servers from their index and no tenant row', async () => {
  // Every checked server in step (database_drift 0, as health checks leave it), one in twenty never
  // checked (null); three drift, one of them decommissioned (not reported).
  await sql`
    INSERT INTO db_servers (name, driver, server_type, max_instances, current_instances, status,
                            database_drift)
    SELECT 'scale-' || g, 'external', 'shared', 100, 0,
           CASE WHEN g % 20 = 0 THEN 'decommissioned' ELSE 'active' END,
           CASE WHEN g % 20 = 1 THEN NULL ELSE 0 END
      FROM generate_series(1, 5000) g`.execute(db);
  await sql`UPDATE db_servers SET database_drift = 2 WHERE name = 'scale-7'`.execute(db);
  await sql`UPDATE db_servers SET slot_drift = -1 WHERE name = 'scale-8'`.execute(db);
  await sql`UPDATE db_servers SET database_drift = 1 WHERE name = 'scale-20'`.execute(db);
  await sql`ANALYZE db_servers`.execute(db);

  const { rows } = await driftedServers.execute(db);
  expect(rows.sort((a, b) => a.name.localeCompare(b.name))).toEqual([
    { name: 'scale-7', databases: 2, slots: 0 },
    { name: 'scale-8', databases: 0, slots: -1 },
  ]);

  const nodes = await planOf(db, driftedServers.compile(db));
  expect(nodes.some((n) => n['Index Name'] === 'db_servers_drifted')).toBe(true);
  expect(nodes.filter((n) => n['Relation Name'] && n['Relation Name'] !== 'db_servers')).toEqual([]);
  expect(nodes.filter((n) => n['Node Type'] === 'Seq Scan')).toEqual([]);
});

it('among 20,000 tenant rows, a scrape counts the warm ones from their index, not the table', async () => {
  const server = await sql<{ id: string }>`
    INSERT INTO db_servers (name, driver, server_type, max_instances, status)
    VALUES ('warm-host', 'external', 'shared', 100, 'active') RETURNING id`.execute(db);
  const id = server.rows[0]!.id;
  // History (released), three warm ones ready to hand out and one still being made (not counted).
  await sql`
    INSERT INTO tenant_databases (instance_id, db_server_id, db_name, db_user, password_enc, status,
                                  ready_at)
    SELECT CASE WHEN g > 4 THEN gen_random_uuid() END, ${id}, 'tdb_w' || g, 'tdb_w' || g || '_u',
           'v1.k1.x', CASE WHEN g > 4 THEN 'released' ELSE 'warm' END,
           CASE WHEN g > 1 THEN now() END
      FROM generate_series(1, 20000) g`.execute(db);
  await sql`ANALYZE tenant_databases`.execute(db);

  expect((await warmReady.execute(db)).rows).toEqual([{ n: 3 }]);
  const nodes = await planOf(db, warmReady.compile(db));
  expect(nodes.some((n) => n['Index Name'] === 'tenant_databases_warm_ready')).toBe(true);
  expect(nodes.filter((n) => n['Node Type'] === 'Seq Scan')).toEqual([]);
});

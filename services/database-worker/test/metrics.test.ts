// What a scrape of tenantdb_catalog_drift costs on a large fleet: it reads the drifted servers
// from their partial index and counts no tenant row, so the cost follows the servers that drift,
// not the fleet (the plan is asserted, not a time). The series themselves are in health.test.ts.
import { type CatalogDb, createCatalogDb } from '@tenantdb/catalog';
import { cloneCatalog } from '@tenantdb/testkit';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { driftedServers } from '../src/metrics';

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

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

function flatten(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(flatten)];
}

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

  const statement = driftedServers.compile(db);
  // EXPLAIN without ANALYZE plans the statement and runs none of it.
  const plan = await db.executeQuery<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>({
    ...statement,
    sql: `EXPLAIN (FORMAT JSON) ${statement.sql}`,
  });
  const nodes = flatten(plan.rows[0]!['QUERY PLAN'][0].Plan);
  expect(nodes.some((n) => n['Index Name'] === 'db_servers_drifted')).toBe(true);
  expect(nodes.filter((n) => n['Relation Name'] && n['Relation Name'] !== 'db_servers')).toEqual([]);
  expect(nodes.filter((n) => n['Node Type'] === 'Seq Scan')).toEqual([]);
});

// The scale bench's fleet seed on a real (migrated) catalog: the catalog's own invariants hold on
// what it writes, the states are the ones it claims, and nothing a real allocation could trip on
// (a claimable warm row with no database behind it) sits on a placeable pool.
import { CATALOG_SCHEMA } from '@tenantdb/catalog';
import { cloneCatalog, type TestCatalog } from '@tenantdb/testkit';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { slotAccounting } from '../bench/catalog';
import { connectPg } from '../bench/pg';
import { checkSize, clearFleet, fleetCensus, SIM_SERVER_PREFIX, seedFleet } from './seed';

let catalog: TestCatalog;
let client: pg.Client;
let realIds: string[];

beforeAll(async () => {
  catalog = await cloneCatalog(inject('catalogAdminUrl'), inject('catalogTemplate'));
  client = await connectPg({ connectionString: catalog.url, options: `-c search_path=${CATALOG_SCHEMA}` });
  const { rows } = await client.query<{ id: string }>(
    `INSERT INTO db_servers (name, driver, host, port, server_type, max_instances, status, admin_user,
                             admin_password_enc)
     VALUES ('real-1', 'external', '127.0.0.1', 6001, 'shared', 1000, 'active', 'postgres', 'v1.k1.a'),
            ('real-2', 'external', '127.0.0.1', 6002, 'shared', 1000, 'active', 'postgres', 'v1.k1.b')
     RETURNING id`,
  );
  realIds = rows.map((r) => r.id);
});

afterAll(async () => {
  await client?.end();
  await catalog?.drop();
});

const seed = (servers: number, rows: number) =>
  seedFleet(client, { size: { servers, rows }, realServerIds: realIds, passwordEnc: 'v1.k1.seeded' });

describe('seedFleet', () => {
  it('seeds the small catalog in the states it describes, with exact slot accounting', async () => {
    await seed(10, 500);
    const census = await fleetCensus(client);
    expect(census.servers).toEqual({ active: 5, cordoned: 1, error: 1, full: 3 });
    expect(Object.values(census.rows).reduce((a, b) => a + b, 0)).toBe(500);
    expect(census.placeable).toBe(5);
    expect(census.freeSlots).toBeGreaterThan(500);
    expect((await slotAccounting(client)).problems).toEqual([]);
    await clearFleet(client);
  });

  it('points every simulated server at a real one and keeps the real ones out of placement', async () => {
    await seed(400, 20_000);
    const { rows: targets } = await client.query<{ port: number; n: number }>(
      `SELECT port, count(*)::int AS n FROM db_servers WHERE name LIKE '${SIM_SERVER_PREFIX}%' GROUP BY port ORDER BY port`,
    );
    expect(targets).toEqual([
      { port: 6001, n: 200 },
      { port: 6002, n: 200 },
    ]);
    const { rows: real } = await client.query<{ status: string }>(
      'SELECT status FROM db_servers WHERE id = ANY($1::uuid[])',
      [realIds],
    );
    expect(real.map((r) => r.status)).toEqual(['cordoned', 'cordoned']);
    expect((await slotAccounting(client)).problems).toEqual([]);

    const census = await fleetCensus(client);
    expect(Object.values(census.servers).reduce((a, b) => a + b, 0)).toBe(400);
    for (const status of [
      'active',
      'full',
      'cordoned',
      'error',
      'decommissioned',
      'draining',
      'provisioning',
    ])
      expect(census.servers[status], status).toBeGreaterThan(0);
    for (const status of ['ready', 'creating', 'releasing', 'released', 'failed', 'warm'])
      expect(census.rows[status], status).toBeGreaterThan(0);
    // Half active and a quarter full, as the status slots say.
    expect(census.servers.active! + census.servers.full!).toBe(300);
  });

  it('leaves no claimable warm row on a placeable pool and gives dedicated servers their tenant', async () => {
    const { rows: claimable } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM tenant_databases t JOIN db_servers s ON s.id = t.db_server_id
        WHERE t.status = 'warm' AND t.ready_at IS NOT NULL AND s.status = 'active'`,
    );
    expect(claimable[0]!.n).toBe(0);
    const { rows: dedicated } = await client.query<{ n: number; owned: number }>(
      `SELECT count(*)::int AS n,
              count(*) FILTER (WHERE EXISTS (
                SELECT FROM tenant_databases t WHERE t.db_server_id = s.id AND t.status = 'ready'
                   AND t.instance_id = s.dedicated_to_instance_id))::int AS owned
         FROM db_servers s WHERE s.server_type = 'dedicated'`,
    );
    expect(dedicated[0]!.n).toBeGreaterThan(0);
    expect(dedicated[0]!.owned).toBe(dedicated[0]!.n);
  });

  it('clears back to the real servers alone', async () => {
    await clearFleet(client);
    const { rows } = await client.query<{ servers: number; tenants: number }>(
      `SELECT (SELECT count(*)::int FROM db_servers) AS servers,
              (SELECT count(*)::int FROM tenant_databases) AS tenants`,
    );
    expect(rows[0]).toEqual({ servers: 2, tenants: 0 });
  });

  it('can point the whole fleet at one real server, and keeps every real one out of placement', async () => {
    await client.query(`UPDATE db_servers SET status = 'active', status_reason = NULL`);
    await seedFleet(client, {
      size: { servers: 10, rows: 500 },
      realServerIds: [realIds[0]!],
      passwordEnc: 'v1.k1.seeded',
    });
    const { rows } = await client.query<{ simulated: boolean; port: number; status: string }>(
      `SELECT name LIKE '${SIM_SERVER_PREFIX}%' AS simulated, port, status FROM db_servers`,
    );
    expect(new Set(rows.filter((r) => r.simulated).map((r) => r.port))).toEqual(new Set([6001]));
    expect(rows.filter((r) => !r.simulated).map((r) => r.status)).toEqual(['cordoned', 'cordoned']);
    await clearFleet(client);
  });
});

describe('checkSize', () => {
  it('refuses a fleet with fewer rows per server than the seeded live counts need', () => {
    expect(() => checkSize({ servers: 100, rows: 4_000 })).toThrow(/under 45 per server/);
    expect(() => checkSize({ servers: 10_000, rows: 500_000 })).not.toThrow();
  });
});

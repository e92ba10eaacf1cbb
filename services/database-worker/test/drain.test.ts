// Drain that empties a server (issue 15), with real servers (local driver), a real worker and
// database-service: 20 tenants with tables and data drained onto two other pools by moves, capacity
// never over-committed meanwhile (a suspended and a restricted tenant among them stay so where they
// go); then a drain that cannot proceed (no pool with room) waits and says why, and uncordon stops it.
import type { DbServer } from '@tenantdb/catalog';
import { createPoolConnections, createTenantAccess } from '@tenantdb/pool-server';
import { canLogin } from '@tenantdb/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fleet, newIds, sleep, startFleet, waitFor } from './harness';
import { fleetRepoSlotDrift } from './moves-drift';
import { allocate, asTenant, makePool } from './moves-kit';

const MOVES_PER_SERVER = 3;
let f: Fleet;
let a: DbServer;

beforeAll(async () => {
  f = await startDrainFleet();
  a = await makePool(f, { name: 'drain-a', priority: 10, max_instances: 20 });
}, 180_000);

afterAll(async () => {
  await f?.close();
}, 120_000);

function startDrainFleet(): Promise<Fleet> {
  return startFleet({
    replicas: 1,
    env: {
      TENANTDB_MOVE_GRACE_MS: '0',
      TENANTDB_DRAIN_STEP_MS: '300',
      TENANTDB_MOVES_PER_SERVER: String(MOVES_PER_SERVER),
      TENANTDB_SHARED_HEADROOM: '0',
    },
  });
}

const admin = (method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown) =>
  f.api(method, url, body, f.adminToken);
/** Restricted by its quota, as the quota ladder leaves a tenant: the catalog row, then its server. */
async function restrict(instanceId: string): Promise<void> {
  const row = await f.db
    .updateTable('tenant_databases')
    .set({ quota_state: 'restricted', quota_state_at: new Date() })
    .where('instance_id', '=', instanceId)
    .where('status', '=', 'ready')
    .returningAll()
    .executeTakeFirstOrThrow();
  const server = (await f.servers()).find((s) => s.id === row.db_server_id)!;
  const access = createTenantAccess(createPoolConnections(f.secrets));
  await access.apply(
    server,
    { dbName: row.db_name, dbUser: row.db_user },
    { restricted: true, suspended: false },
  );
}

const detail = async (id: string) => (await admin('GET', `/api/database/admin/pools/${id}`)).body;

/** Every 100 ms until stopped: no server over its slots, no more moves off `source` than the bound. */
function sampleCapacity(source: string) {
  const seen = {
    samples: 0,
    overCommitted: [] as string[],
    maxMovesOffSource: 0,
    blocked: new Set<string>(),
  };
  let stop = false;
  const done = (async () => {
    while (!stop) {
      const servers = await f.servers();
      for (const s of servers)
        if (s.current_instances > s.max_instances)
          seen.overCommitted.push(`${s.name} ${s.current_instances}/${s.max_instances}`);
      const running = await f.db
        .selectFrom('tenant_moves')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('source_server_id', '=', source)
        .where('phase', 'not in', ['done', 'cancelled', 'failed'])
        .executeTakeFirstOrThrow();
      seen.maxMovesOffSource = Math.max(seen.maxMovesOffSource, Number(running.n));
      for (const b of (await detail(source)).drain?.blocked ?? []) seen.blocked.add(b.reason);
      seen.samples++;
      await sleep(100);
    }
  })();
  return {
    seen,
    async stop() {
      stop = true;
      await done;
    },
  };
}

describe('drain of a pool with 20 tenants', () => {
  it('moves every tenant to other pools; the pool ends empty and drained, nothing over-committed', async () => {
    const tenants: Awaited<ReturnType<typeof allocate>>[] = [];
    for (let i = 0; i < 20; i++) {
      const t = await allocate(f, newIds('standard'));
      expect(t.creds.db_server_id).toBe(a.id);
      await asTenant(
        t.creds,
        `CREATE SCHEMA app;
         CREATE TABLE app.items (id serial PRIMARY KEY, v text NOT NULL);
         INSERT INTO app.items (v) SELECT 'tenant-${i}-' || g FROM generate_series(1, 100) g;`,
      );
      tenants.push(t);
    }
    // One suspended (through the API) and one restricted by its quota (as the quota ladder leaves
    // it: the catalog row and the server): both move, and stay so on their new server.
    expect(
      (await admin('POST', `/api/database/admin/allocations/${tenants[0]!.ids.instance_id}/suspend`)).status,
    ).toBe(200);
    expect(await canLogin(tenants[0]!.creds)).toBe(false);
    await restrict(tenants[1]!.ids.instance_id);
    await expect(asTenant(tenants[1]!.creds, "INSERT INTO app.items (v) VALUES ('no')")).rejects.toThrow(
      /permission denied/,
    );

    // Room for all of them, over two pools (neither alone could take the 20).
    const b = await makePool(f, { name: 'drain-b', priority: 20, max_instances: 12 });
    const c = await makePool(f, { name: 'drain-c', priority: 30, max_instances: 12 });

    const sampler = sampleCapacity(a.id);
    const started = await admin('POST', `/api/database/admin/pools/${a.id}/drain`);
    expect(started.status).toBe(200);
    expect(started.body).toMatchObject({ status: 'draining', remaining_tenants: 20 });
    expect(started.body.drain).toMatchObject({ tenants_left: 20, blocked: [], finished_at: null });

    let progress: { tenants_left: number; moves_running: number } | undefined;
    await waitFor(
      async () => {
        const d = await detail(a.id);
        progress = d.drain;
        return d.status === 'drained';
      },
      400_000,
      `pool ${a.id} to be drained (last progress ${JSON.stringify(progress)})`,
    );
    await sampler.stop();
    expect(sampler.seen.samples).toBeGreaterThan(10);
    expect(sampler.seen.overCommitted).toEqual([]);
    expect(sampler.seen.maxMovesOffSource).toBeGreaterThan(0);
    expect(sampler.seen.maxMovesOffSource).toBeLessThanOrEqual(MOVES_PER_SERVER);
    // There was room all along: nothing was ever shown as blocked.
    expect([...sampler.seen.blocked]).toEqual([]);

    const drained = await detail(a.id);
    expect(drained).toMatchObject({ status: 'drained', current_instances: 0 });
    expect(drained.drain).toMatchObject({
      tenants_left: 0,
      warm_left: 0,
      moves_running: 0,
      moves_failed: 0,
      blocked: [],
    });
    expect(drained.drain.finished_at).not.toBeNull();
    const servers = await f.servers();
    const used = (id: string) => servers.find((s) => s.id === id)!.current_instances;
    expect(used(b.id) + used(c.id)).toBe(20);
    expect(await fleetRepoSlotDrift(f)).toBe(0);

    // The suspended tenant is still suspended on its new server; resumed, it logs in there.
    const suspendedNow = (await f.api('POST', '/api/database/allocate', tenants[0]!.ids)).body;
    expect([b.id, c.id]).toContain(suspendedNow.db_server_id);
    expect(await canLogin(suspendedNow)).toBe(false);
    expect(
      (await admin('POST', `/api/database/admin/allocations/${tenants[0]!.ids.instance_id}/resume`)).status,
    ).toBe(200);
    // The restricted one reads but cannot write there.
    const restrictedNow = (await f.api('POST', '/api/database/allocate', tenants[1]!.ids)).body;
    expect([b.id, c.id]).toContain(restrictedNow.db_server_id);
    await expect(asTenant(restrictedNow, "INSERT INTO app.items (v) VALUES ('no')")).rejects.toThrow(
      /permission denied/,
    );

    // Every tenant logs in on its new server with its old password and has its data.
    for (const [i, t] of tenants.entries()) {
      const now = (await f.api('POST', '/api/database/allocate', t.ids)).body;
      expect([b.id, c.id]).toContain(now.db_server_id);
      expect(now.db_password).toBe(t.creds.db_password);
      expect(await canLogin(now)).toBe(true);
      const [row] = await asTenant<{ n: number; first: string }>(
        now,
        'SELECT count(*)::int AS n, min(v) AS first FROM app.items',
      );
      expect(row).toEqual({ n: 100, first: `tenant-${i}-1` });
      // The old address no longer serves it.
      expect(await canLogin(t.creds)).toBe(false);
    }

    // A drained server takes no new tenant; its drain is audited; the worker counted it.
    const fresh = await allocate(f, newIds('standard'));
    expect(fresh.creds.db_server_id).not.toBe(a.id);
    const audits = await f.db
      .selectFrom('audit_events')
      .select('action')
      .where('db_server_id', '=', a.id)
      .where('action', 'in', ['server.drain', 'server.drain_finished'])
      .orderBy('id')
      .execute();
    expect(audits.map((e) => e.action)).toEqual(['server.drain', 'server.drain_finished']);
    const metrics = (await f.workers[0]!.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/tenantdb_drains_total\{result="drained",service="database-worker"\} 1/);
    expect(metrics).toMatch(/tenantdb_drain_tenants_left\{service="database-worker"\} 0/);
    // The drained pool's slots are not capacity any more.
    const stats = (await admin('GET', '/api/database/admin/stats')).body;
    const others = (await f.servers()).filter((s) => s.id !== a.id && s.status !== 'decommissioned');
    expect(stats.total_capacity).toBe(others.reduce((n, s) => n + s.max_instances, 0));

    // Draining again is success and changes nothing; decommission takes the drained server.
    const again = await admin('POST', `/api/database/admin/pools/${a.id}/drain`);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ status: 'drained', remaining_tenants: 0 });
    expect((await admin('DELETE', `/api/database/admin/pools/${a.id}`)).status).toBe(202);
  }, 600_000);
});

describe('a drain that cannot proceed', () => {
  it('waits with the reason shown (no pool with room), and uncordon stops it', async () => {
    const pools = (await f.servers()).filter((s) => s.name === 'drain-b' || s.name === 'drain-c');
    const b = pools.find((s) => s.name === 'drain-b')!;
    // Every other pool is out of placement (c, and any the capacity planner made): nowhere to go.
    for (const other of await f.servers())
      if (other.id !== b.id && ['active', 'full'].includes(other.status))
        expect((await admin('POST', `/api/database/admin/pools/${other.id}/cordon`)).status).toBe(200);
    const onB = await f.db
      .selectFrom('tenant_databases')
      .select(['instance_id', 'id'])
      .where('db_server_id', '=', b.id)
      .where('status', '=', 'ready')
      .execute();
    expect(onB.length).toBeGreaterThan(1);
    const before = (await f.servers()).map((s) => [s.id, s.current_instances]);

    expect((await admin('POST', `/api/database/admin/pools/${b.id}/drain`)).status).toBe(200);
    let d:
      | { status: string; drain: { blocked: { reason: string; instance_id: string | null }[] } }
      | undefined;
    await waitFor(
      async () => {
        d = await detail(b.id);
        return d!.drain.blocked.length > 0;
      },
      60_000,
      `the drain to show why it waits (last ${JSON.stringify(d?.drain)})`,
    );
    expect(d!.status).toBe('draining');
    expect(d!.drain.blocked).toEqual([
      { tenant_database_id: null, instance_id: null, reason: expect.stringMatching(/^no pool with room/) },
    ]);
    // Nothing moved, no slot taken anywhere.
    const moves = await f.db
      .selectFrom('tenant_moves')
      .select('id')
      .where('source_server_id', '=', b.id)
      .execute();
    expect(moves).toEqual([]);
    expect((await f.servers()).map((s) => [s.id, s.current_instances])).toEqual(before);

    // Uncordon stops it: the server is back in placement and the next step ends the drain.
    const reopened = await admin('POST', `/api/database/admin/pools/${b.id}/uncordon`);
    expect(reopened.status).toBe(200);
    expect(['active', 'full']).toContain(reopened.body.status);
    await waitFor(
      async () =>
        /tenantdb_drains_total\{result="stopped",service="database-worker"\} 1/.test(
          (await f.workers[0]!.app.inject({ method: 'GET', url: '/metrics' })).body,
        ),
      30_000,
      'the drain job to stop',
    );
    expect((await detail(b.id)).drain).toBeNull();
    await sleep(1_000);
    expect(
      await f.db.selectFrom('tenant_moves').select('id').where('source_server_id', '=', b.id).execute(),
    ).toEqual([]);
  }, 180_000);
});

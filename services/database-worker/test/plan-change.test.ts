// Plan changes between shared and dedicated servers, with real servers (local driver), a real
// worker, database-service and instance-service (the portal's API and its callback deliveries):
// up to a dedicated plan and back, the tenant's data and password going with it, instance-service
// learning each new address with a signed callback; and the refusals (4xx, nothing changed).
import { LOCK_KEYS, trySessionLock } from '@tenantdb/catalog';
import { canLogin } from '@tenantdb/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fleet, startFleet, waitFor } from './harness';
import { fleetRepoSlotDrift } from './moves-drift';
import { asTenant, makePool, moveOf, waitForPhase } from './moves-kit';
import { type Portal, startPortal } from './plan-change-kit';

let f: Fleet;
let p: Portal;
let poolId: string;

beforeAll(async () => {
  f = await startFleet({ replicas: 1, env: { TENANTDB_MOVE_GRACE_MS: '1000' } });
  poolId = (await makePool(f, { name: 'plans-a', priority: 10 })).id;
  p = await startPortal(f);
}, 180_000);

afterAll(async () => {
  await p?.close();
  await f?.close();
}, 120_000);

const admin = (method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown) =>
  f.api(method, url, body, f.adminToken);

async function tenantRow(instanceId: string) {
  return f.db
    .selectFrom('tenant_databases')
    .selectAll()
    .where('instance_id', '=', instanceId)
    .where('status', '=', 'ready')
    .executeTakeFirstOrThrow();
}

/** The delivery of `database.moved` for a move, once it arrived with a valid signature. */
async function movedCallback(moveId: string) {
  const delivery = `moved-${moveId}`;
  await waitFor(
    async () => p.receiver.for(delivery).some((r) => r.answered === 200),
    30_000,
    `the database.moved callback of move ${moveId}`,
  );
  const got = p.receiver.for(delivery).find((r) => r.answered === 200)!;
  expect(got.signatureValid).toBe(true);
  expect(got.headers['x-tenantdb-event']).toBe('database.moved');
  return JSON.parse(got.body);
}

describe('a plan change between shared and dedicated', () => {
  it('moves a tenant with data to its own dedicated server and back to a pool; instance-service follows', async () => {
    const { id, q } = await p.readyInstance('standard');
    const creds = (await p.api('POST', `/api/v1/instances/${id}/credentials${q}`)).body;
    expect(creds.db_port).toBe((await f.servers()).find((s) => s.id === poolId)!.port);
    await asTenant(
      creds,
      `CREATE SCHEMA app;
       CREATE TABLE app.items (id bigserial PRIMARY KEY, v integer NOT NULL);
       INSERT INTO app.items (v) SELECT g FROM generate_series(1, 5000) g;`,
    );

    // Up: a dedicated server is provisioned for the instance, then the tenant moves there.
    const up = await p.api('POST', `/api/v1/instances/${id}/plan${q}`, { plan_tier: 'premium' });
    expect(up.status, JSON.stringify(up.body)).toBe(202);
    expect(up.body).toMatchObject({
      id,
      status: 'moving',
      plan_tier: 'standard',
      requested_plan_tier: 'premium',
    });
    const upMove = up.body.move_id as string;
    const dedicated = (await f.servers()).find((s) => s.dedicated_to_instance_id === id)!;
    expect(dedicated.server_type).toBe('dedicated');
    const first = await moveOf(f, upMove);
    expect(first).toMatchObject({
      target_server_id: dedicated.id,
      source_server_id: poolId,
      plan_tier: 'premium',
    });
    expect(['awaiting_target', 'pending', 'copying_schema', 'syncing']).toContain(first.phase);
    await waitForPhase(f, upMove, ['done'], 180_000);

    const onDedicated = await tenantRow(id);
    expect(onDedicated).toMatchObject({
      db_server_id: dedicated.id,
      plan_tier: 'premium',
      connection_limit: 100,
    });
    const dedicatedNow = (await f.servers()).find((s) => s.id === dedicated.id)!;
    const body = await movedCallback(upMove);
    expect(body).toMatchObject({
      event: 'database.moved',
      instance: { id, plan_tier: 'premium', db_host: dedicatedNow.host, db_port: dedicatedNow.port },
    });
    const shown = (await p.api('GET', `/api/v1/instances/${id}${q}`)).body;
    expect(shown).toMatchObject({
      plan_tier: 'premium',
      db_host: dedicatedNow.host,
      db_port: dedicatedNow.port,
    });
    const there = (await p.api('POST', `/api/v1/instances/${id}/credentials${q}`)).body;
    expect(there).toMatchObject({ db_port: dedicatedNow.port, db_password: creds.db_password });
    expect(await canLogin(there)).toBe(true);
    const [count] = await asTenant<{ n: number }>(there, 'SELECT count(*)::int AS n FROM app.items');
    expect(count!.n).toBe(5000);
    // The target role carries the new plan's connection limit.
    const [limit] = await asTenant<{ l: number }>(
      there,
      'SELECT rolconnlimit AS l FROM pg_roles WHERE rolname = session_user',
    );
    expect(limit!.l).toBe(100);
    await asTenant(there, 'INSERT INTO app.items (v) VALUES (-1)');

    // Down: anywhere on a shared pool; the emptied dedicated server is retired.
    const down = await p.api('POST', `/api/v1/instances/${id}/plan${q}`, { plan_tier: 'standard' });
    expect(down.status, JSON.stringify(down.body)).toBe(202);
    const downMove = down.body.move_id as string;
    expect(downMove).not.toBe(upMove);
    await waitForPhase(f, downMove, ['done'], 180_000);
    expect(await tenantRow(id)).toMatchObject({
      db_server_id: poolId,
      plan_tier: 'standard',
      connection_limit: 20,
    });
    await f.waitForServer(
      (servers) => servers.find((s) => s.id === dedicated.id)?.status === 'decommissioned',
      60_000,
    );
    const pool = (await f.servers()).find((s) => s.id === poolId)!;
    const back = await movedCallback(downMove);
    expect(back.instance).toMatchObject({ plan_tier: 'standard', db_port: pool.port });
    const shownBack = (await p.api('GET', `/api/v1/instances/${id}${q}`)).body;
    expect(shownBack).toMatchObject({ plan_tier: 'standard', db_host: pool.host, db_port: pool.port });
    const home = (await p.api('POST', `/api/v1/instances/${id}/credentials${q}`)).body;
    expect(home).toMatchObject({ db_port: pool.port, db_password: creds.db_password });
    const [after] = await asTenant<{ n: number }>(home, 'SELECT count(*)::int AS n FROM app.items');
    expect(after!.n).toBe(5001);
    // One delivery per cut-over; the audit trail on both sides.
    expect(p.receiver.received.filter((r) => r.headers['x-tenantdb-event'] === 'database.moved').length).toBe(
      2,
    );
    const audited = await p.deps.db
      .selectFrom('audit_events')
      .select('action')
      .where('instance_id', '=', id)
      .where('action', 'in', ['instance.plan_change', 'instance.database_moved'])
      .execute();
    expect(audited.map((a) => a.action).sort()).toEqual([
      'instance.database_moved',
      'instance.database_moved',
      'instance.plan_change',
      'instance.plan_change',
    ]);
    const catalogAudit = await f.db
      .selectFrom('audit_events')
      .select('action')
      .where('instance_id', '=', id)
      .where('action', 'in', ['allocation.plan_changed', 'move.cut_over', 'server.retire_dedicated'])
      .execute();
    expect(catalogAudit.map((a) => a.action).sort()).toEqual([
      'move.cut_over',
      'move.cut_over',
      'server.retire_dedicated',
    ]);
    expect(await fleetRepoSlotDrift(f)).toBe(0);
    const scrape = (await f.workers[0]!.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(scrape).toContain(
      'tenantdb_plan_changes_total{direction="to_dedicated",result="done",service="database-worker"} 1',
    );
    expect(scrape).toContain(
      'tenantdb_plan_changes_total{direction="to_shared",result="done",service="database-worker"} 1',
    );
    // The up-move waited for its server: it entered pending from awaiting_target on this worker.
    expect(scrape).toContain('tenantdb_move_phases_total{phase="pending",service="database-worker"} 1');
  }, 400_000);

  it('refuses what it cannot do with a clear 4xx, changing nothing; a change under way is one, and its cancel frees everything', async () => {
    const { id, q } = await p.readyInstance('standard');
    const before = await tenantRow(id);
    const change = (plan_tier: string, query = q) =>
      p.api('POST', `/api/v1/instances/${id}/plan${query}`, { plan_tier });
    const dedicatedOf = async () => (await f.servers()).filter((s) => s.dedicated_to_instance_id === id);

    expect((await change('nosuch')).status).toBe(400);
    expect((await change('X!')).status).toBe(400);
    expect((await change('premium', `?customer_id=${crypto.randomUUID()}`)).status).toBe(404);
    expect(
      (await p.api('POST', `/api/v1/instances/${id}/plan${q}`, { plan_tier: 'premium' }, 'wrong')).status,
    ).toBe(401);
    expect(
      (
        await admin('POST', `/api/database/admin/allocations/${crypto.randomUUID()}/plan`, {
          plan_tier: 'premium',
        })
      ).status,
    ).toBe(404);
    expect(
      (await admin('POST', `/api/database/admin/allocations/${id}/plan`, { plan_tier: 'nosuch' })).status,
    ).toBe(400);

    // Over the customer's dedicated limit (the plan allows none): 409, no server, no move.
    for (const plan of [
      {
        plan_tier: 'ded-none',
        placement: 'dedicated',
        connection_limit: 50,
        max_dedicated_servers_per_customer: 0,
      },
      { plan_tier: 'old-shared', placement: 'shared', connection_limit: 5 },
    ])
      expect((await admin('POST', '/api/database/admin/plans', plan)).status).toBe(201);
    const limited = await change('ded-none');
    expect(limited.status, JSON.stringify(limited.body)).toBe(409);
    expect(limited.body.message).toContain('dedicated servers');
    expect((await admin('DELETE', '/api/database/admin/plans/old-shared')).status).toBe(200);
    const retired = await admin('POST', `/api/database/admin/allocations/${id}/plan`, {
      plan_tier: 'old-shared',
    });
    expect(retired.status).toBe(409);
    expect(retired.body.message).toContain('retired');
    expect((await change('old-shared')).status).toBe(409);

    // Suspended: no move, and no dedicated server made for it.
    expect((await p.api('POST', `/api/v1/instances/${id}/suspend${q}`)).status).toBe(200);
    const suspended = await change('premium');
    expect(suspended.status).toBe(409);
    expect(suspended.body.message).toContain('suspended');
    expect((await p.api('POST', `/api/v1/instances/${id}/resume${q}`)).status).toBe(200);
    expect(await dedicatedOf()).toEqual([]);
    expect((await admin('GET', `/api/database/admin/moves?instance_id=${id}`)).body.total_count).toBe(0);

    // With no worker running, the change waits for its dedicated server: a second one is 409, and
    // so are a plain move and a release meanwhile.
    await f.workers.shift()!.stop();
    const started = await change('premium');
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const moveId = started.body.move_id as string;
    expect((await moveOf(f, moveId)).phase).toBe('awaiting_target');
    const again = await change('enterprise');
    expect(again.status).toBe(409);
    expect(again.body.message).toContain('already under way');
    expect((await change('professional')).status).toBe(409);
    expect((await admin('POST', '/api/database/admin/moves', { instance_id: id })).status).toBe(409);
    expect((await f.api('DELETE', `/api/database/allocations/${id}`)).status).toBe(409);
    // The waiting move holds no slot: the dedicated server, not yet active, has none to give.
    const [waitingOn] = await dedicatedOf();
    expect(waitingOn).toMatchObject({ status: 'provisioning', current_instances: 0 });

    // Suspended meanwhile, then cancelled while it waits: ended, the suspension kept (the waiting
    // move never closed the source, so its undo does not open it), and the dedicated server
    // retired once it is up.
    const creds = (await p.api('POST', `/api/v1/instances/${id}/credentials${q}`)).body;
    expect((await p.api('POST', `/api/v1/instances/${id}/suspend${q}`)).status).toBe(200);
    expect((await admin('POST', `/api/database/admin/moves/${moveId}/cancel`)).status).toBe(202);
    await f.addWorker();
    await waitForPhase(f, moveId, ['cancelled'], 120_000);
    expect(await canLogin(creds)).toBe(false);
    expect((await p.api('POST', `/api/v1/instances/${id}/resume${q}`)).status).toBe(200);
    expect(await canLogin(creds)).toBe(true);
    await f.waitForServer(
      (servers) => servers.find((s) => s.id === waitingOn!.id)?.status === 'decommissioned',
      120_000,
    );
    const after = await tenantRow(id);
    expect(after).toMatchObject({
      db_server_id: before.db_server_id,
      plan_tier: 'standard',
      connection_limit: before.connection_limit,
    });
    expect((await p.api('GET', `/api/v1/instances/${id}${q}`)).body).toMatchObject({ plan_tier: 'standard' });
    expect(await fleetRepoSlotDrift(f)).toBe(0);
  }, 300_000);

  it('a plain move (no plan change) also reaches instance-service: new address stored, one signed callback', async () => {
    const { id, q } = await p.readyInstance('standard');
    const other = await makePool(f, { name: 'plans-b', priority: 20 });
    const started = await admin('POST', '/api/database/admin/moves', {
      instance_id: id,
      target_server_id: other.id,
    });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    expect(started.body.plan_tier).toBeNull();
    await waitForPhase(f, started.body.id, ['grace', 'dropping_source', 'done']);
    const body = await movedCallback(started.body.id);
    expect(body.instance).toMatchObject({
      id,
      plan_tier: 'standard',
      db_host: other.host,
      db_port: other.port,
    });
    const shown = (await p.api('GET', `/api/v1/instances/${id}${q}`)).body;
    expect(shown).toMatchObject({ plan_tier: 'standard', db_host: other.host, db_port: other.port });
    expect((await tenantRow(id)).db_server_id).toBe(other.id);
  }, 180_000);

  it('a dedicated server that fails to provision fails the plan change cleanly: nothing held, the tenant where it was', async () => {
    const { id, q } = await p.readyInstance('standard');
    const before = await tenantRow(id);
    await f.workers.shift()!.stop();
    const started = await p.api('POST', `/api/v1/instances/${id}/plan${q}`, { plan_tier: 'premium' });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const [server] = (await f.servers()).filter((s) => s.dedicated_to_instance_id === id);
    // What provision-server leaves when it gives up (its attempts spent): the server in error.
    await f.db
      .updateTable('db_servers')
      .set({ status: 'error', status_reason: 'provisioning failed (test)' })
      .where('id', '=', server!.id)
      .execute();
    await f.addWorker();
    const failed = await waitForPhase(f, started.body.move_id, ['failed'], 60_000);
    expect(failed.error).toContain('provisioning failed (test)');
    expect(await tenantRow(id)).toMatchObject({ db_server_id: before.db_server_id, plan_tier: 'standard' });
    expect((await f.servers()).find((s) => s.id === server!.id)!.current_instances).toBe(0);
    expect(await fleetRepoSlotDrift(f)).toBe(0);
    // The tenant was never closed: it logs in where it was (cleanup-failed-servers removes the server).
    const creds = (await p.api('POST', `/api/v1/instances/${id}/credentials${q}`)).body;
    expect(await canLogin(creds)).toBe(true);
  }, 120_000);

  it('a dedicated server left by a plan change whose move could not be recorded is retired by the cleanup', async () => {
    const { id, q } = await p.readyInstance();
    const before = await tenantRow(id);
    // A rotation of the allocation holds its lock: the move cannot be recorded once the server is made.
    const held = await trySessionLock(f.db, LOCK_KEYS.rotation(before.id), () =>
      p.api('POST', `/api/v1/instances/${id}/plan${q}`, { plan_tier: 'premium' }),
    );
    expect(held.acquired).toBe(true);
    const refused = held.acquired ? held.value : undefined;
    expect(refused?.status, JSON.stringify(refused?.body)).toBe(409);
    expect(refused?.body.message).toContain('rotated or released');
    const [left] = (await f.servers()).filter((s) => s.dedicated_to_instance_id === id);
    expect(left).toBeDefined();
    expect((await admin('GET', `/api/database/admin/moves?instance_id=${id}`)).body.total_count).toBe(0);
    await f.waitForServer((servers) => servers.find((s) => s.id === left!.id)?.status === 'active', 90_000);
    await f.queues.enqueue('cleanup-failed-servers', {});
    await f.waitForServer(
      (servers) => servers.find((s) => s.id === left!.id)?.status === 'decommissioned',
      60_000,
    );
    expect(await tenantRow(id)).toMatchObject({ db_server_id: before.db_server_id, plan_tier: 'standard' });
    expect(await fleetRepoSlotDrift(f)).toBe(0);
  }, 240_000);
});

// Operator actions on pool servers, against real pool servers and the real queue: cordon and drain
// take a server out of placement (drain then queues the worker's drain-server job, which moves the
// tenants: services/database-worker/test/drain.test.ts), uncordon puts it back, and decommission
// retires an empty server through the worker queue (and only an empty one).
import net from 'node:net';
import { createServersRepo } from '@tenantdb/catalog';
import { createQueues } from '@tenantdb/jobs';
import { createLogger, createRegistry } from '@tenantdb/observability';
import { createPoolConnections } from '@tenantdb/pool-server';
import { captureLogs } from '@tenantdb/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app';
import { canLogin, type Harness, newIds, startHarness } from './harness';

let h: Harness;
/** The two pools the harness starts: `a` takes the first tenant, `b` is the other one. */
let a: string;
let b: string;
/** A one-slot pool, added to see full → cordoned → full. */
let small: string;
/** Tenants placed on `a`, by instance id, with the credentials allocate answered. */
const onA = new Map<string, Parameters<typeof canLogin>[0]>();

beforeAll(async () => {
  h = await startHarness({ pools: [10, 10] });
});
afterAll(async () => {
  await h?.close();
});

type Res = Awaited<ReturnType<Harness['api']>>;
const base = '/api/database/admin/pools';
const admin = (method: 'GET' | 'POST' | 'DELETE', url: string) => h.api(method, url, undefined, h.adminToken);
const act = (id: string, action: 'cordon' | 'uncordon' | 'drain') => admin('POST', `${base}/${id}/${action}`);
const decommission = (id: string) => admin('DELETE', `${base}/${id}`);

async function allocate() {
  const ids = newIds();
  const res = await h.api('POST', '/api/database/allocate', ids);
  return { ids, res };
}

const server = (id: string) =>
  h.db
    .selectFrom('db_servers')
    .select(['status', 'status_reason', 'current_instances', 'max_instances', 'updated_at'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();

/** Slot-holding tenant rows per server, from the catalog. */
async function liveRowsByServer(): Promise<Record<string, number>> {
  const rows = await h.db
    .selectFrom('tenant_databases')
    .select((eb) => ['db_server_id', eb.fn.countAll<number>().as('n')])
    .where('status', 'in', ['creating', 'ready', 'releasing'])
    .groupBy('db_server_id')
    .execute();
  return Object.fromEntries(rows.map((r) => [r.db_server_id, Number(r.n)]));
}

const audits = (id: string, action: string) =>
  h.db
    .selectFrom('audit_events')
    .select(['actor', 'request_id', 'details'])
    .where('db_server_id', '=', id)
    .where('action', '=', action)
    .orderBy('occurred_at')
    .execute();

/** decommission-server jobs waiting in the provisioning queue, as their payloads. */
async function decommissionJobs(): Promise<unknown[]> {
  const jobs = await h.queues.queue('provisioning').getJobs(['waiting', 'delayed', 'prioritized', 'active']);
  return jobs.filter((j) => j.name === 'decommission-server').map((j) => j.data);
}

/** drain-server jobs waiting in the maintenance queue (delayed included), as their payloads. */
async function drainJobs(): Promise<unknown[]> {
  const jobs = await h.queues.queue('maintenance').getJobs(['waiting', 'delayed', 'prioritized', 'active']);
  return jobs.filter((j) => j.name === 'drain-server').map((j) => j.data);
}

function expectError(res: Res, status: number, message?: RegExp) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(Object.keys(res.body).sort()).toEqual(['error', 'message', 'requestId', 'statusCode']);
  if (message) expect(res.body.message).toMatch(message);
}

describe('cordon', () => {
  it('keeps new tenants off a cordoned server while its tenants keep working', async () => {
    const first = await allocate();
    expect(first.res.status, JSON.stringify(first.res.body)).toBe(200);
    a = first.res.body.db_server_id;
    b = h.servers.map((s) => s.id).find((id) => id !== a)!;
    onA.set(first.ids.instance_id, first.res.body);

    const res = await act(a, 'cordon');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({
      id: a,
      status: 'cordoned',
      status_reason: 'cordoned by admin',
      current_instances: 1,
    });
    expect(await server(a)).toMatchObject({ status: 'cordoned', current_instances: 1 });
    expect(await audits(a, 'server.cordon')).toEqual([
      {
        actor: 'admin',
        request_id: res.headers['x-request-id'],
        details: { from: 'active', to: 'cordoned' },
      },
    ]);

    for (let i = 0; i < 4; i++) {
      const next = await allocate();
      expect(next.res.status, JSON.stringify(next.res.body)).toBe(200);
      expect(next.res.body.db_server_id).toBe(b);
    }
    expect(await liveRowsByServer()).toEqual({ [a]: 1, [b]: 4 });
    expect((await server(a)).current_instances).toBe(1);
    expect(await canLogin(first.res.body)).toBe(true);
  });

  it('is idempotent: a second cordon answers the cordoned server and changes nothing', async () => {
    const before = await server(a);
    const again = await act(a, 'cordon');
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ id: a, status: 'cordoned' });
    expect(await server(a)).toEqual(before);
    expect(await audits(a, 'server.cordon')).toHaveLength(1);
  });

  it('answers 202 to allocate when every server is cordoned, and places nothing', async () => {
    expect((await act(b, 'cordon')).status).toBe(200);
    const { ids, res } = await allocate();
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    expect(res.body.status).toBe('provisioning');
    expect(
      await h.db
        .selectFrom('tenant_databases')
        .select('id')
        .where('instance_id', '=', ids.instance_id)
        .execute(),
    ).toEqual([]);
    expect(await liveRowsByServer()).toEqual({ [a]: 1, [b]: 4 });
    expect((await server(a)).current_instances).toBe(1);
    expect((await server(b)).current_instances).toBe(4);
    for (const credentials of onA.values()) expect(await canLogin(credentials)).toBe(true);
  });
});

describe('uncordon', () => {
  it('puts a cordoned server back into placement', async () => {
    const res = await act(a, 'uncordon');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ id: a, status: 'active', status_reason: null });
    expect(await server(a)).toMatchObject({ status: 'active', status_reason: null });
    expect(await audits(a, 'server.uncordon')).toEqual([
      {
        actor: 'admin',
        request_id: res.headers['x-request-id'],
        details: { from: 'cordoned', to: 'active' },
      },
    ]);

    // b is still cordoned, so the only place for it is a
    const next = await allocate();
    expect(next.res.status, JSON.stringify(next.res.body)).toBe(200);
    expect(next.res.body.db_server_id).toBe(a);
    onA.set(next.ids.instance_id, next.res.body);
    expect(await liveRowsByServer()).toEqual({ [a]: 2, [b]: 4 });

    expect((await act(b, 'uncordon')).body.status).toBe('active');
    const again = await act(a, 'uncordon');
    expect(again.status).toBe(200);
    expect(again.body.status).toBe('active');
    expect(await audits(a, 'server.uncordon')).toHaveLength(1);
  });

  it('cordons a full server and reopens it as full', async () => {
    small = (await h.addPoolServer(1, 'pool-small')).id;
    await act(a, 'cordon');
    await act(b, 'cordon');
    const filler = await allocate();
    expect(filler.res.body.db_server_id).toBe(small);
    expect((await server(small)).status).toBe('full');

    const cordoned = await act(small, 'cordon');
    expect(cordoned.status).toBe(200);
    expect(cordoned.body).toMatchObject({ status: 'cordoned', current_instances: 1 });
    const reopened = await act(small, 'uncordon');
    expect(reopened.status).toBe(200);
    expect(reopened.body).toMatchObject({ status: 'full', current_instances: 1, max_instances: 1 });
    expect(await server(small)).toMatchObject({ status: 'full', status_reason: null });

    // a release gives the slot back but does not reopen a cordoned server
    await act(small, 'cordon');
    expect((await h.api('DELETE', `/api/database/allocations/${filler.ids.instance_id}`)).status).toBe(200);
    expect(await server(small)).toMatchObject({ status: 'cordoned', current_instances: 0 });
    expect((await act(small, 'uncordon')).body).toMatchObject({ status: 'active', current_instances: 0 });
    expect((await audits(small, 'server.uncordon')).map((e) => e.details)).toEqual([
      { from: 'cordoned', to: 'full' },
      { from: 'cordoned', to: 'active' },
    ]);

    await act(a, 'uncordon');
    await act(b, 'uncordon');
    expect((await server(a)).status).toBe('active');
    expect((await server(b)).status).toBe('active');
  });
});

describe('drain', () => {
  it('drains a cordoned server, and uncordon reopens a draining one', async () => {
    await act(small, 'cordon');
    const drained = await act(small, 'drain');
    expect(drained.status).toBe(200);
    expect(drained.body).toMatchObject({ status: 'draining', remaining_tenants: 0 });
    expect(drained.body.drain).toMatchObject({ tenants_left: 0, moves_running: 0, requested_by: 'admin' });
    expect(await server(small)).toMatchObject({ status: 'draining' });
    expect(await drainJobs()).toContainEqual({ server_id: small });
    expect((await audits(small, 'server.drain')).map((e) => e.details)).toEqual([
      { from: 'cordoned', to: 'draining' },
    ]);
    const reopened = await act(small, 'uncordon');
    expect(reopened.body).toMatchObject({ status: 'active', status_reason: null });
    expect(await server(small)).toMatchObject({ status: 'active' });
    expect((await admin('GET', `${base}/${small}`)).body.drain).toBeNull();
    // out of placement again for the rest of the file: the 503 test decommissions it empty
    expect((await act(small, 'cordon')).body.status).toBe('cordoned');
  });

  it('stops placement and reports the tenants still on the server', async () => {
    const res = await act(a, 'drain');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ id: a, status: 'draining', current_instances: 2, remaining_tenants: 2 });
    expect((await liveRowsByServer())[a]).toBe(2);
    expect(await server(a)).toMatchObject({ status: 'draining', current_instances: 2 });
    expect(await audits(a, 'server.drain')).toEqual([
      {
        actor: 'admin',
        request_id: res.headers['x-request-id'],
        details: { from: 'active', to: 'draining' },
      },
    ]);

    for (let i = 0; i < 3; i++) {
      const next = await allocate();
      expect(next.res.status).toBe(200);
      expect(next.res.body.db_server_id).toBe(b);
    }
    expect((await server(a)).current_instances).toBe(2);
    for (const credentials of onA.values()) expect(await canLogin(credentials)).toBe(true);

    const again = await act(a, 'drain');
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ status: 'draining', remaining_tenants: 2 });
    expect(await audits(a, 'server.drain')).toHaveLength(1);
    // a draining server cannot be cordoned (it is already out of placement; uncordon reopens it)
    expectError(await act(a, 'cordon'), 409, /draining/);
    // its progress is in the pool's detail
    const d = (await admin('GET', `${base}/${a}`)).body;
    expect(d.drain).toMatchObject({ tenants_left: 2, warm_left: 0, moves_failed: 0, finished_at: null });
  });

  it('refuses a dedicated server (emptied by a plan change) and a platform server, changing nothing', async () => {
    for (const server_type of ['dedicated', 'platform'] as const) {
      const row = await h.db
        .insertInto('db_servers')
        .values({
          name: `drain-refused-${server_type}`,
          driver: 'external',
          server_type,
          max_instances: 1,
          status: 'active',
          ...(server_type === 'dedicated'
            ? { dedicated_to_instance_id: crypto.randomUUID(), dedicated_to_customer_id: crypto.randomUUID() }
            : {}),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      expectError(await act(row.id, 'drain'), 409, server_type === 'dedicated' ? /plan change/ : /platform/);
      expect(await server(row.id)).toMatchObject({ status: 'active', status_reason: null });
      expect(await audits(row.id, 'server.drain')).toEqual([]);
      expect(await drainJobs()).not.toContainEqual({ server_id: row.id });
      await h.db.deleteFrom('db_servers').where('id', '=', row.id).execute();
    }
  });
});

describe('decommission', () => {
  it('refuses a server that still holds tenants and changes nothing', async () => {
    const before = await server(a);
    const res = await decommission(a);
    expectError(res, 409, /still holds 2 tenant databases/);
    expect(await server(a)).toEqual(before);
    expect(await decommissionJobs()).toEqual([]);
    expect(await audits(a, 'server.decommission')).toEqual([]);
  });

  it('marks an emptied server decommissioning and queues exactly one removal', async () => {
    for (const instanceId of onA.keys())
      expect((await h.api('DELETE', `/api/database/allocations/${instanceId}`)).status).toBe(200);
    expect(await server(a)).toMatchObject({ status: 'draining', current_instances: 0 });

    const res = await decommission(a);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    expect(res.body).toMatchObject({
      status: 'decommissioning',
      pool: { id: a, status: 'decommissioning', current_instances: 0 },
    });
    expect(await server(a)).toMatchObject({
      status: 'decommissioning',
      status_reason: 'decommissioning, requested by admin',
    });
    expect(await decommissionJobs()).toEqual([{ server_id: a }]);
    const job = await h.queues.queue('provisioning').getJob(`decommission-server-${a}`);
    expect(job?.data).toEqual({ server_id: a });
    expect(await audits(a, 'server.decommission')).toEqual([
      {
        actor: 'admin',
        request_id: res.headers['x-request-id'],
        details: { from: 'draining', name: h.servers.find((s) => s.id === a)!.name, driver: 'external' },
      },
    ]);

    const again = await decommission(a);
    expect(again.status).toBe(202);
    expect(again.body.status).toBe('decommissioning');
    expect(await decommissionJobs()).toEqual([{ server_id: a }]);
    expect(await audits(a, 'server.decommission')).toHaveLength(1);

    for (let i = 0; i < 2; i++) {
      const next = await allocate();
      expect(next.res.status).toBe(200);
      expect(next.res.body.db_server_id).toBe(b);
    }
    expect(await server(a)).toMatchObject({ status: 'decommissioning', current_instances: 0 });
  });

  // The service reads first for a clear message; the guard against a racing allocation is the
  // conditional UPDATE itself, so it is checked here on its own, both halves of it.
  it('checks emptiness inside the update: slot count and live rows', async () => {
    const servers = createServersRepo(h.db);
    const rollback = new Error('rollback');
    await expect(
      h.db.transaction().execute(async (trx) => {
        // b holds live rows; pretend its slot count drifted to 0
        await trx.updateTable('db_servers').set({ current_instances: 0 }).where('id', '=', b).execute();
        expect(await servers.markDecommissioning(b, ['active'], 'test', trx)).toBeUndefined();
        // and a slot in use with no row behind it
        await trx.updateTable('db_servers').set({ current_instances: 1 }).where('id', '=', small).execute();
        expect(await servers.markDecommissioning(small, ['cordoned'], 'test', trx)).toBeUndefined();
        await trx.updateTable('db_servers').set({ current_instances: 0 }).where('id', '=', small).execute();
        expect((await servers.markDecommissioning(small, ['cordoned'], 'test', trx))?.status).toBe(
          'decommissioning',
        );
        throw rollback;
      }),
    ).rejects.toBe(rollback);
    expect(await server(b)).toMatchObject({ status: 'active', current_instances: 9 });
    expect(await server(small)).toMatchObject({ status: 'cordoned', current_instances: 0 });
  });

  it('refuses to cordon, uncordon or drain a decommissioning server', async () => {
    const before = await server(a);
    for (const action of ['cordon', 'uncordon', 'drain'] as const)
      expectError(await act(a, action), 409, /decommissioning/);
    expect(await server(a)).toEqual(before);
  });

  it('answers 200 for a server that is already decommissioned and queues nothing', async () => {
    // what the worker does once it has removed the server
    await (await h.queues.queue('provisioning').getJob(`decommission-server-${a}`))?.remove();
    await h.db.updateTable('db_servers').set({ status: 'decommissioned' }).where('id', '=', a).execute();

    const res = await decommission(a);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ status: 'decommissioned', pool: { id: a, status: 'decommissioned' } });
    expect(await decommissionJobs()).toEqual([]);
    expect(await audits(a, 'server.decommission')).toHaveLength(1);
  });

  it('refuses a server that is still provisioning', async () => {
    const res = await h.api('POST', base, { max_instances: 5 }, h.adminToken);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const id = res.body.pool.id as string;

    expectError(await decommission(id), 409, /provisioning/);
    expectError(await act(id, 'cordon'), 409, /provisioning/);
    expectError(await act(id, 'drain'), 409, /provisioning/);
    expectError(await act(id, 'uncordon'), 409, /provisioning/);
    expect(await server(id)).toMatchObject({ status: 'provisioning', status_reason: null });
    expect(await decommissionJobs()).toEqual([]);
    expect(
      await h.db.selectFrom('audit_events').select('action').where('db_server_id', '=', id).execute(),
    ).toEqual([{ action: 'server.create' }]);
  });

  it('answers 503 when the queue is down, keeps the server decommissioning, and a retry queues it', async () => {
    const proxy = await startTcpProxy(new URL(h.config.REDIS_URL));
    const url = new URL(h.config.REDIS_URL);
    url.host = `127.0.0.1:${proxy.port}`;
    const queues = createQueues({ redisUrl: url.toString(), prefix: h.config.TENANTDB_QUEUE_PREFIX });
    const connections = createPoolConnections(h.secrets);
    const app = await buildApp({
      config: h.config,
      db: h.db,
      queues,
      logger: createLogger({ name: 'database-service', level: 'warn' }, captureLogs().stream),
      registry: createRegistry('database-service'),
      secrets: h.secrets,
      connections,
    });
    try {
      await app.ready();
      await queues.queue('provisioning').waitUntilReady();
      proxy.cut(); // Redis was reachable, now it is not

      const res = await app.inject({
        method: 'DELETE',
        url: `${base}/${small}`,
        headers: { authorization: `Bearer ${h.adminToken}` },
      });
      expect(res.statusCode, res.body).toBe(503);
      expect(res.headers['retry-after']).toBeDefined();
      expect(JSON.parse(res.body).message).toMatch(/could not be queued/);
    } finally {
      await app.close();
      await Promise.race([queues.close(), new Promise((r) => setTimeout(r, 2_000))]);
      queues.connection.disconnect();
      await connections.close();
    }
    expect(await server(small)).toMatchObject({ status: 'decommissioning', current_instances: 0 });
    expect(await decommissionJobs()).toEqual([]);
    expect(await audits(small, 'server.decommission')).toHaveLength(1);

    // Redis is back (the harness's own connection): the repeat queues the removal
    const retry = await decommission(small);
    expect(retry.status, JSON.stringify(retry.body)).toBe(202);
    expect(await decommissionJobs()).toEqual([{ server_id: small }]);
    expect(await audits(small, 'server.decommission')).toHaveLength(1);
  });
});

describe('access and validation', () => {
  const routes = (id: string) =>
    [
      ['POST', `${base}/${id}/cordon`],
      ['POST', `${base}/${id}/uncordon`],
      ['POST', `${base}/${id}/drain`],
      ['DELETE', `${base}/${id}`],
    ] as const;

  it('answers 401 without a token, 403 with the allocate token, and changes nothing', async () => {
    const before = await server(b);
    for (const [method, url] of routes(b)) {
      expectError(await h.api(method, url, undefined, null), 401);
      expectError(await h.api(method, url, undefined, h.allocateToken), 403);
    }
    expect(await server(b)).toEqual(before);
    expect(await decommissionJobs()).toEqual([{ server_id: small }]);
  });

  it('answers 404 for an unknown id and 400 for an id that is not a UUID', async () => {
    for (const [method, url] of routes(crypto.randomUUID()))
      expectError(await admin(method, url), 404, /no server/);
    for (const [method, url] of routes('not-a-uuid')) expectError(await admin(method, url), 400);
    for (const [method, url] of routes("1' OR '1'='1")) expectError(await admin(method, url), 400);
  });

  it('documents the four routes with bearer security and their refusals', async () => {
    const doc = (await h.api('GET', '/openapi.json', undefined, null)).body;
    const ops = [
      doc.paths['/api/database/admin/pools/{id}/cordon']?.post,
      doc.paths['/api/database/admin/pools/{id}/uncordon']?.post,
      doc.paths['/api/database/admin/pools/{id}/drain']?.post,
      doc.paths['/api/database/admin/pools/{id}']?.delete,
    ];
    for (const op of ops) {
      expect(op).toBeDefined();
      expect(op.security).toEqual([{ bearer: [] }]);
      expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['400', '401', '403', '404', '409']));
      expect(op.parameters[0]).toMatchObject({ in: 'path', name: 'id', required: true });
      expect(op.parameters[0].schema.format).toBe('uuid');
    }
    expect(Object.keys(ops[3].responses)).toEqual(expect.arrayContaining(['200', '202', '503']));
    expect(ops[2].description).toMatch(/moves every tenant/i);
    expect(ops[2].description).not.toMatch(/not implemented/i);
    expect(Object.keys(ops[2].responses)).toEqual(expect.arrayContaining(['200', '503']));
  });
});

/** A TCP relay to Redis that can be cut, to take Redis away from one client only. */
async function startTcpProxy(target: URL): Promise<{ port: number; cut(): void }> {
  const sockets = new Set<net.Socket>();
  const relay = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 6379), target.hostname);
    sockets.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    for (const s of [client, upstream]) {
      s.on('error', () => {});
      s.on('close', () => {
        client.destroy();
        upstream.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  return {
    port: (relay.address() as net.AddressInfo).port,
    cut() {
      relay.close();
      for (const s of sockets) s.destroy();
    },
  };
}

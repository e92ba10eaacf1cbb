// Faults and leftovers: a worker killed in the middle of provision-server, cleanup of failed
// servers, reconcile of orphans, and Redis going away while workers run. Real processes only.
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCatalogDb, createFleetRepo } from '@tenantdb/catalog';
import { createLogger } from '@tenantdb/observability';
import { generateTenantNames } from '@tenantdb/pool-server';
import { freePort, startRedis } from '@tenantdb/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { orphanObjects } from '../src/jobs/reconcile';
import {
  activePool,
  asAdmin,
  canLogin,
  type Fleet,
  newIds,
  orphanServerRequest,
  startFleet,
  waitFor,
} from './harness';

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
});

/** Postmasters whose data directory is under root (their children do not carry -D). */
async function postmastersUnder(root: string): Promise<number> {
  let n = 0;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const args = cmdline.split('\0');
    const d = args.indexOf('-D');
    if (d >= 0 && args[d + 1]?.startsWith(`${root}/`)) n++;
  }
  return n;
}

describe('a worker killed mid-job', () => {
  // Its waits add up to more than the default test timeout when the machine is busy.
  it('SIGKILL during provision-server leaves exactly one server once another replica has run', {
    timeout: 240_000,
  }, async () => {
    fleet = await startFleet({ replicas: 0 });
    const f = fleet;
    const child = f.spawnWorker();
    // The child's own planner run (its schedule fires on start) creates the first pool row.
    await f.waitForServer((servers) => servers.length === 1, 60_000);
    const [row] = await f.servers();
    // Kill as soon as the driver has started making the server: mid-create.
    await waitFor(
      async () => (await readdir(f.root)).includes(row!.name),
      60_000,
      'the local driver to start creating the server',
    );
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));

    await f.addWorker();
    await f.waitForServer(
      (servers) => servers.every((s) => s.status === 'active' || s.status === 'error'),
      90_000,
    );
    const servers = await f.servers();
    expect(servers).toHaveLength(1);
    const objects = await f.local.list();
    const server = servers[0]!;
    if (server.status === 'active') {
      expect(objects.map((o) => o.serverId)).toEqual([server.id]);
      expect(await postmastersUnder(f.root)).toBe(1);
      const res = await f.api('POST', '/api/database/allocate', newIds());
      expect(res.status).toBe(200);
      expect(await canLogin(res.body)).toBe(true);
    } else {
      // Given up: nothing of it may be left running.
      expect(objects).toEqual([]);
      expect(await postmastersUnder(f.root)).toBe(0);
    }
    expect((await readdir(f.root)).filter((name) => name !== server.name)).toEqual([]);
  });
});

describe('cleanup-failed-servers', () => {
  it('removes servers in error with no tenants, including one that failed while provisioning, and touches nothing else; a server of a driver not enabled ends in error', async () => {
    fleet = await startFleet({ replicas: 2 });
    const f = fleet;
    const pool = await activePool(f);

    // A server whose provisioning fails for good: its directory is taken by something not ours.
    const foreign = join(f.root, 'pool-clash');
    await mkdir(foreign);
    await writeFile(join(foreign, 'precious.txt'), 'not tenantdb data');
    const clash = await f.db
      .insertInto('db_servers')
      .values({
        name: 'pool-clash',
        driver: 'local',
        server_type: 'shared',
        max_instances: 10,
        status: 'provisioning',
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    await f.queues.enqueue('provision-server', { server_id: clash.id });
    await f.waitForServer((servers) => servers.find((s) => s.id === clash.id)?.status === 'error');
    const failed = (await f.servers()).find((s) => s.id === clash.id)!;
    expect(failed.status_reason).toMatch(/not managed by tenantdb/);

    // A server of a driver no worker here enables: retried (another replica might have it), then
    // error with the reason — not provisioning for ever.
    const unserved = await f.db
      .insertInto('db_servers')
      .values({
        name: 'pool-k8s',
        driver: 'kubernetes',
        server_type: 'shared',
        max_instances: 10,
        status: 'provisioning',
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    await f.queues.enqueue('provision-server', { server_id: unserved.id });
    await f.waitForServer((servers) => servers.find((s) => s.id === unserved.id)?.status === 'error');
    expect((await f.servers()).find((s) => s.id === unserved.id)!.status_reason).toMatch(
      /driver "kubernetes" is not enabled/,
    );

    // A pool that went to error with no tenant, and one in error that still holds a tenant.
    const emptyPool = pool;
    const busy = await activePool2(f);
    const tenant = await f.api('POST', '/api/database/allocate', newIds());
    expect(tenant.status).toBe(200);
    const busyId = tenant.body.db_server_id as string;
    const idle = busyId === emptyPool.id ? busy : emptyPool;
    await f.db
      .updateTable('db_servers')
      .set({ status: 'error', status_reason: 'test' })
      .where('id', 'in', [idle.id, busyId])
      .execute();

    await f.queues.enqueue('cleanup-failed-servers', {});
    await f.waitForServer((servers) => servers.filter((s) => s.status === 'decommissioned').length === 2);
    const after = new Map((await f.servers()).map((s) => [s.id, s.status]));
    expect(after.get(clash.id)).toBe('decommissioned');
    expect(after.get(idle.id)).toBe('decommissioned');
    expect(after.get(busyId)).toBe('error'); // holds a tenant: left for an operator
    expect((await f.local.list()).map((o) => o.serverId)).toEqual([busyId]);
    expect(await readFile(join(foreign, 'precious.txt'), 'utf8')).toBe('not tenantdb data');
    expect(await canLogin(tenant.body)).toBe(true);
  });
});

/** A second active pool (the planner adds one when the first is full or gone). */
async function activePool2(f: Fleet) {
  const row = await f.db
    .insertInto('db_servers')
    .values({
      name: `pool-extra-${randomUUID().slice(0, 8)}`,
      driver: 'local',
      server_type: 'shared',
      max_instances: 10,
      status: 'provisioning',
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  await f.queues.enqueue('provision-server', { server_id: row.id });
  await f.waitForServer((servers) => servers.find((s) => s.id === row.id)?.status === 'active');
  return (await f.servers()).find((s) => s.id === row.id)!;
}

describe('reconcile', () => {
  it('removes a managed orphan server and orphaned tenant databases, never anything it did not create', async () => {
    fleet = await startFleet({ replicas: 2 });
    const f = fleet;
    const pool = await activePool(f);
    const tenant = await f.api('POST', '/api/database/allocate', newIds());
    expect(tenant.status).toBe(200);

    // A server the local driver made (labelled) whose catalog row never existed.
    const orphan = await f.local.create({
      ...orphanServerRequest(randomUUID(), 'orphan-server'),
      settings: { fsync: 'off' },
    });
    expect(orphan.ref).toBe('orphan-server');
    // Something under the root that is not ours.
    await mkdir(join(f.root, 'not-ours'));
    await writeFile(join(f.root, 'not-ours', 'keep.txt'), 'keep');
    // On the pool: an orphaned tenant database and role (names as tenantdb generates them; each
    // the half left of a tenant), a database that is not tenantdb's, and a role with the tenant
    // prefix whose name tenantdb never generates.
    const orphanRole = generateTenantNames().dbUser;
    const orphanDb = generateTenantNames().dbName;
    await asAdmin(f, pool, `CREATE ROLE ${orphanRole}`);
    await asAdmin(f, pool, `CREATE DATABASE ${orphanDb}`);
    await asAdmin(f, pool, 'CREATE DATABASE customer_keep');
    await asAdmin(f, pool, 'CREATE ROLE tdb_not_generated_u');

    await f.queues.enqueue('reconcile', {});
    await waitFor(
      async () =>
        (await f.db.selectFrom('audit_events').select('id').where('action', '=', 'fleet.reconcile').execute())
          .length > 0,
      60_000,
      'reconcile to finish',
    );
    expect((await f.local.list()).map((o) => o.ref)).toEqual([pool.orchestrator_ref]);
    expect(await readFile(join(f.root, 'not-ours', 'keep.txt'), 'utf8')).toBe('keep');
    const dbs = (await asAdmin<{ datname: string }>(f, pool, 'SELECT datname FROM pg_database')).map(
      (r) => r.datname,
    );
    expect(dbs).not.toContain(orphanDb);
    expect(dbs).toContain('customer_keep');
    expect(dbs).toContain(tenant.body.db_name);
    const roles = (await asAdmin<{ rolname: string }>(f, pool, 'SELECT rolname FROM pg_roles')).map(
      (r) => r.rolname,
    );
    expect(roles).not.toContain(orphanRole);
    expect(roles).toContain('tdb_not_generated_u');
    expect(roles).toContain(tenant.body.db_user);
    expect(await canLogin(tenant.body)).toBe(true);
    const row = (await f.servers()).find((s) => s.id === pool.id)!;
    expect(row.database_drift).toBe(0);
  });
});

describe('reconcile without the catalog', () => {
  it('removes no orchestrator object when the catalog cannot say which servers exist, and the orphan once it can', async () => {
    fleet = await startFleet({ replicas: 0 });
    const f = fleet;
    const orphan = await f.local.create({
      ...orphanServerRequest(randomUUID(), 'orphan-while-blind'),
      settings: { fsync: 'off' },
    });
    const log = createLogger({ name: 'reconcile-test', level: 'silent' });
    const drivers = new Map([['local' as const, f.local]]);
    // A catalog that cannot be reached (nothing listens on its port), as one that went away in
    // the middle of the pass.
    const gone = createCatalogDb({
      url: `postgres://nobody@127.0.0.1:${await freePort()}/gone`,
      poolSize: 1,
    });
    const blind = { log, errors: 0 };
    expect(await orphanObjects({ drivers, fleet: createFleetRepo(gone) }, blind)).toBe(0);
    expect(blind.errors).toBe(1);
    expect((await f.local.list()).map((o) => o.ref)).toContain(orphan.ref);
    await gone.destroy();

    const seeing = { log, errors: 0 };
    expect(await orphanObjects({ drivers, fleet: createFleetRepo(f.db) }, seeing)).toBe(1);
    expect(seeing.errors).toBe(0);
    expect((await f.local.list()).map((o) => o.ref)).not.toContain(orphan.ref);
  });
});

describe('Redis restarted while workers run', () => {
  it('the API answers 503 at once while Redis is down; workers resume after and provision', {
    timeout: 150_000,
  }, async () => {
    const redis = await startRedis();
    try {
      fleet = await startFleet({ replicas: 2, redisUrl: redis.url });
      const f = fleet;
      // Let the start-up planner run settle: it provisions one pool.
      await f.waitForServer((servers) => servers.some((s) => s.status === 'active'));
      const [pool] = await f.servers('active');
      await f.db.updateTable('db_servers').set({ status: 'cordoned' }).where('id', '=', pool!.id).execute();

      await redis.stop();
      const started = Date.now();
      const refused = await f.api('POST', '/api/database/allocate', newIds()); // no room: must enqueue
      expect(refused.status).toBe(503);
      expect(refused.headers['retry-after']).toBeDefined();
      expect(Date.now() - started).toBeLessThan(10_000);
      const ready = await f.app.inject({ method: 'GET', url: '/readyz' });
      expect(ready.statusCode).toBe(503);
      // Nothing was reserved for the refused request.
      const rows = await f.db.selectFrom('tenant_databases').select('id').execute();
      expect(rows).toEqual([]);

      await redis.start();
      const ids = newIds();
      const answer = await f.allocateUntilReady(ids, 90_000);
      expect(answer.status).toBe(200);
      expect(answer.body.db_server_id).not.toBe(pool!.id);
      expect(await canLogin(answer.body)).toBe(true);
      expect((await f.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
      expect(refused.body.message).toMatch(/unavailable/);
    } finally {
      await fleet?.close();
      fleet = undefined;
      await redis.stop();
    }
  });
});

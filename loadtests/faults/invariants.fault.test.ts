// The invariant checker can fail: a clean world passes, and each planted violation is caught by
// the invariant it breaks. Cheap: a cloned catalog, the suite's Redis, and the test catalog
// Postgres standing in for a pool server (registered as `external`, so no process of its own).
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CatalogDb, createCatalogDb } from '@tenantdb/catalog';
import { createQueues, type Queues } from '@tenantdb/jobs';
import { createSecretBox } from '@tenantdb/secrets';
import { adminQuery, cloneCatalog, type TestCatalog } from '@tenantdb/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type Acknowledged, checkInvariants, type Invariant } from './invariants';

const box = createSecretBox([{ id: 'k1', key: randomBytes(32) }]);
const suffix = randomBytes(4).toString('hex');
const tenant = {
  db: `tdb_selftest_${suffix}`,
  user: `tdb_selftest_${suffix}_u`,
  password: randomBytes(24).toString('hex'),
};
const token = `tok_${randomBytes(20).toString('hex')}`;
let catalog: TestCatalog;
let db: CatalogDb;
let queues: Queues;
let root: string;
let serverId: string;
let tenantRowId: string;
const logs: string[] = [];
const acknowledged: Acknowledged[] = [];
const adminUrl = () => inject('catalogAdminUrl');

beforeAll(async () => {
  catalog = await cloneCatalog(adminUrl(), inject('catalogTemplate'));
  db = createCatalogDb({ url: catalog.url, poolSize: 2 });
  queues = createQueues({ redisUrl: inject('redisUrl'), prefix: `selftest-${suffix}` });
  root = await mkdtemp(join(tmpdir(), 'tenantdb-selftest-'));
  const url = new URL(adminUrl());
  await adminQuery(adminUrl(), `CREATE ROLE "${tenant.user}" LOGIN PASSWORD '${tenant.password}'`);
  await adminQuery(adminUrl(), `CREATE DATABASE "${tenant.db}" OWNER "${tenant.user}"`);
  const selftestServerId = randomUUID();
  const server = await db
    .insertInto('db_servers')
    .values({
      id: selftestServerId,
      name: `pool-selftest-${suffix}`,
      driver: 'external',
      host: url.hostname,
      port: Number(url.port),
      server_type: 'shared',
      max_instances: 3,
      current_instances: 1,
      status: 'active',
      admin_user: decodeURIComponent(url.username),
      admin_password_enc: box.encrypt(decodeURIComponent(url.password), selftestServerId),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  serverId = server.id;
  const instanceId = randomUUID();
  tenantRowId = randomUUID();
  await db
    .insertInto('tenant_databases')
    .values({
      id: tenantRowId,
      instance_id: instanceId,
      customer_id: randomUUID(),
      db_server_id: serverId,
      db_name: tenant.db,
      db_user: tenant.user,
      password_enc: box.encrypt(tenant.password, tenantRowId),
      status: 'ready',
    })
    .execute();
  acknowledged.push({
    instance_id: instanceId,
    released: false,
    credentials: {
      db_server_id: serverId,
      db_host: url.hostname,
      db_port: Number(url.port),
      db_name: tenant.db,
      db_user: tenant.user,
      db_password: tenant.password,
    },
  });
  await healthSchedule('health-check-all');
  logs.push(JSON.stringify({ level: 30, msg: 'allocated', db_name: tenant.db }));
});

afterAll(async () => {
  await queues?.queue('monitoring').obliterate({ force: true });
  await queues?.close();
  await db?.destroy();
  await catalog?.drop();
  await adminQuery(adminUrl(), `DROP DATABASE IF EXISTS "${tenant.db}" WITH (FORCE)`);
  await adminQuery(adminUrl(), `DROP ROLE IF EXISTS "${tenant.user}"`);
  if (root) await rm(root, { recursive: true, force: true });
});

function healthSchedule(id: string) {
  return queues
    .queue('monitoring')
    .upsertJobScheduler(id, { every: 3_600_000 }, { name: 'health-check-all', data: {} });
}

/** Removes a schedule and the next run it had already queued. */
async function removeHealthSchedule(id: string) {
  const monitoring = queues.queue('monitoring');
  await monitoring.removeJobScheduler(id);
  for (const job of await monitoring.getJobs(['delayed', 'waiting']))
    if (job?.repeatJobKey === id) await job.remove();
}

async function violated(): Promise<Set<Invariant>> {
  const report = await checkInvariants({
    db,
    secrets: box,
    serverRoot: root,
    queues,
    logs: () => logs.join('\n'),
    knownSecrets: [token],
    acknowledged,
  });
  expect(report.checked).toHaveLength(10);
  return new Set(report.violations.map((v) => v.invariant));
}

/** Plants a violation, expects exactly those invariants to fail, undoes it, expects a clean world. */
async function planted(
  invariant: Invariant | Invariant[],
  plant: () => Promise<unknown>,
  undo: () => Promise<unknown>,
) {
  await plant();
  try {
    expect([...(await violated())].sort()).toEqual([invariant].flat().sort());
  } finally {
    await undo();
  }
  expect([...(await violated())]).toEqual([]);
}

describe('the invariant checker', () => {
  it('passes a consistent world', async () => {
    expect([...(await violated())]).toEqual([]);
  });

  it('catches a bumped current_instances', () =>
    planted(
      'slots',
      () => db.updateTable('db_servers').set({ current_instances: 2 }).where('id', '=', serverId).execute(),
      () => db.updateTable('db_servers').set({ current_instances: 1 }).where('id', '=', serverId).execute(),
    ));

  it('catches a server holding more live allocations than it has slots', async () => {
    // current_instances cannot pass max_instances (a CHECK), so the rows give it away, and the
    // counter no longer matches them either. A second server, in `error` (not inspected on the
    // server), holds them.
    let crowded = '';
    await planted(
      ['capacity', 'slots'],
      async () => {
        crowded = (
          await db
            .insertInto('db_servers')
            .values({
              name: `pool-crowded-${suffix}`,
              driver: 'external',
              server_type: 'shared',
              max_instances: 1,
              current_instances: 1,
              status: 'error',
            })
            .returning('id')
            .executeTakeFirstOrThrow()
        ).id;
        for (let i = 0; i < 2; i++) {
          const id = randomUUID();
          await db
            .insertInto('tenant_databases')
            .values({
              id,
              instance_id: randomUUID(),
              customer_id: randomUUID(),
              db_server_id: crowded,
              db_name: `tdb_crowded_${i}`,
              db_user: `tdb_crowded_${i}_u`,
              password_enc: box.encrypt(randomBytes(16).toString('hex'), id),
              status: 'ready',
            })
            .execute();
        }
      },
      async () => {
        await db.deleteFrom('tenant_databases').where('db_server_id', '=', crowded).execute();
        await db.deleteFrom('db_servers').where('id', '=', crowded).execute();
      },
    );
  });

  it("catches what a finished move left behind (its replication role, a publication's namesake)", () =>
    planted(
      'moves',
      () => adminQuery(adminUrl(), 'CREATE ROLE tenantdb_move_0123456789abcdef0123456789abcdef NOLOGIN'),
      () => adminQuery(adminUrl(), 'DROP ROLE tenantdb_move_0123456789abcdef0123456789abcdef'),
    ));

  it('catches a drained server that still holds a tenant', () =>
    // The self-test server, marked drained with its tenant still there: everything else about it
    // stays true (a drained server is inspected like a serving one), only the drain invariant fails.
    planted(
      'drains',
      () => db.updateTable('db_servers').set({ status: 'drained' }).where('id', '=', serverId).execute(),
      () => db.updateTable('db_servers').set({ status: 'active' }).where('id', '=', serverId).execute(),
    ));

  it('catches an orphaned tenant database', () =>
    planted(
      'orphans',
      () => adminQuery(adminUrl(), `CREATE DATABASE "tdb_orphan_${suffix}"`),
      () => adminQuery(adminUrl(), `DROP DATABASE "tdb_orphan_${suffix}"`),
    ));

  it('catches an orphaned tenant role', () =>
    planted(
      'orphans',
      () => adminQuery(adminUrl(), `CREATE ROLE "tdb_orphan_${suffix}_u"`),
      () => adminQuery(adminUrl(), `DROP ROLE "tdb_orphan_${suffix}_u"`),
    ));

  it('catches a tenant the catalog says is restricted or suspended and its server does not, and a change left pending', async () => {
    const set = (fields: {
      quota_state?: 'ok' | 'restricted';
      suspended_at?: Date | null;
      access_pending?: boolean;
    }) => db.updateTable('tenant_databases').set(fields).where('db_name', '=', tenant.db).execute();
    await planted(
      'access',
      () => set({ quota_state: 'restricted' }),
      () => set({ quota_state: 'ok' }),
    );
    await planted(
      'access',
      () => set({ suspended_at: new Date() }),
      () => set({ suspended_at: null }),
    );
    await planted(
      'access',
      () => set({ access_pending: true }),
      () => set({ access_pending: false }),
    );
  });

  it('catches an orphaned data directory', () =>
    planted(
      'orphans',
      () => mkdir(join(root, 'pool-left-behind')),
      () => rm(join(root, 'pool-left-behind'), { recursive: true }),
    ));

  it('catches acknowledged credentials that no longer log in (the catalog password neither)', () =>
    planted(
      ['logins', 'passwords'],
      () => adminQuery(adminUrl(), `ALTER ROLE "${tenant.user}" PASSWORD 'not-what-the-client-was-given'`),
      () => adminQuery(adminUrl(), `ALTER ROLE "${tenant.user}" PASSWORD '${tenant.password}'`),
    ));

  it('catches a ready allocation whose catalog password does not log in, and a rotation left unsettled', async () => {
    const row = () => db.updateTable('tenant_databases').where('db_name', '=', tenant.db);
    await planted(
      'passwords',
      () =>
        row()
          .set({ password_enc: box.encrypt('a-password-the-role-never-had', tenantRowId) })
          .execute(),
      () =>
        row()
          .set({ password_enc: box.encrypt(tenant.password, tenantRowId) })
          .execute(),
    );
    await planted(
      'passwords',
      () =>
        row()
          .set({ password_pending_enc: box.encrypt(randomBytes(16).toString('hex'), tenantRowId) })
          .execute(),
      () => row().set({ password_pending_enc: null }).execute(),
    );
  });

  it('catches an allocation released by the client that is still live', () =>
    planted(
      'logins',
      async () => {
        acknowledged[0]!.released = true;
      },
      async () => {
        acknowledged[0]!.released = false;
      },
    ));

  it('catches a second health schedule, and a missing one', async () => {
    await planted(
      'health-schedule',
      () => healthSchedule('health-check-all-again'),
      () => removeHealthSchedule('health-check-all-again'),
    );
    await planted(
      'health-schedule',
      () => removeHealthSchedule('health-check-all'),
      () => healthSchedule('health-check-all'),
    );
  });

  it('catches a tenant password or a token in the logs', async () => {
    for (const secret of [tenant.password, token])
      await planted(
        'secrets',
        async () => logs.push(`{"msg":"oops","detail":"${secret}"}`),
        async () => logs.pop(),
      );
  });

  it('catches a secret in a job payload', async () => {
    const maintenance = queues.queue('maintenance');
    await planted(
      'secrets',
      () => maintenance.add('reconcile', { password: tenant.password }, { jobId: 'planted' }),
      () => maintenance.remove('planted'),
    );
  });
});

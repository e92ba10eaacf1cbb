// Backups and restores with real servers (local driver, PostgreSQL 15 and 17), a real worker and
// database-service, and a real S3-protocol server (s3rver, backups-kit.ts): a backup, damage, a
// restore that replaces (data as it was, the tenant's password still works, the replaced database
// closed then dropped); a restore as a copy into another allocation of the customer (both there,
// isolated); the typed client; a dump that cannot be made is never listed as a backup; bad
// requests and a store that is down change nothing; nothing secret in rows, manifests, payloads
// or logs. The scheduler, retention, drills and lost jobs: backups-schedule.test.ts.
import type { DbServer } from '@tenantdb/catalog';
import { createDatabaseServiceClient } from '@tenantdb/contracts';
import { canLogin, type S3TestServer } from '@tenantdb/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminOf,
  type BackupFleet,
  backupNow as backupNowIn,
  SCHEMA,
  snapshotOf,
  startBackupFleet,
  waitForRestore as waitForRestoreIn,
} from './backups-kit';
import { asAdmin, type Fleet, newIds, waitFor } from './harness';
import { allocate, asTenant, makePool } from './moves-kit';

let k: BackupFleet;
let f: Fleet;
let s3: S3TestServer;
let pool: DbServer;

beforeAll(async () => {
  k = await startBackupFleet('backups-a');
  ({ f, s3, pool } = k);
}, 180_000);

afterAll(async () => {
  await k?.close();
}, 120_000);

const admin = (method: 'GET' | 'POST', url: string, body?: unknown) => adminOf(f)(method, url, body);
const backupNow = (instanceId: string, statuses?: string[]) => backupNowIn(f, instanceId, statuses);
const waitForRestore = (id: string, phases: string[]) => waitForRestoreIn(f, id, phases);

describe('backup and restore (replace)', () => {
  it('backs up, and after damage restores the data as it was; the password still works; the old database is closed, then dropped', async () => {
    const { ids, creds } = await allocate(f, newIds());
    await asTenant(creds, SCHEMA);
    const before = await snapshotOf(creds);

    const backup = await backupNow(ids.instance_id);
    expect(backup).toMatchObject({ reason: 'manual', key_id: 'k1', size_bytes: expect.any(Number) });
    expect(backup.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(backup.manifest).toMatchObject({
      format: 'pg_dump -Fc',
      db_name: creds.db_name,
      db_server_id: pool.id,
      pg_dump_version: expect.stringMatching(/^15\./),
      row_counts: { 'app.items': 5000, 'app.events': 42 },
      key_id: 'k1',
      sha256: backup.sha256,
    });
    expect(Number(backup.manifest.archive_entries)).toBeGreaterThanOrEqual(8);
    // The object in the store is sealed: not a pg_dump archive ("PGDMP") and larger by the tags.
    const listed = await admin('GET', `/api/database/admin/backups?instance_id=${ids.instance_id}`);
    expect(listed.body.total_count).toBe(1);
    expect(Number(backup.stored_bytes)).toBeGreaterThan(Number(backup.size_bytes));

    // Damage: a table dropped, rows deleted, rows added, the sequence moved.
    await asTenant(
      creds,
      `DROP TABLE app.events; DELETE FROM app.items WHERE v % 2 = 0; INSERT INTO app.items (v) VALUES (-1);
       SELECT nextval('app.ticket_seq')`,
    );
    const restore = await admin('POST', `/api/database/admin/backups/${backup.id}/restore`, {
      mode: 'replace',
    });
    expect(restore.status, JSON.stringify(restore.body)).toBe(202);
    expect(restore.body).toMatchObject({ mode: 'replace', phase: 'pending', instance_id: ids.instance_id });
    const graced = await waitForRestore(restore.body.id, ['grace', 'dropping_old', 'done']);
    expect(Number(graced.bytes_restored)).toBe(backup.size_bytes);

    // The tenant's own password, the same address: the data is as it was at the backup.
    expect(await canLogin(creds)).toBe(true);
    expect(await snapshotOf(creds)).toEqual(before);
    expect((await asTenant(creds, 'SELECT * FROM app.recent')).length).toBe(10);
    await asTenant(
      creds,
      "INSERT INTO app.items (v) VALUES (0); INSERT INTO app.events (what) VALUES ('after')",
    );
    // Objects still belong to the tenant's owner role (it may alter them).
    await asTenant(creds, 'ALTER TABLE app.items ADD COLUMN extra int');

    const replacedName = `tenantdb_replaced_${(restore.body.id as string).replaceAll('-', '')}`;
    const dbs = async () =>
      asAdmin<{ datname: string; datallowconn: boolean }>(
        f,
        pool,
        `SELECT datname, datallowconn FROM pg_database WHERE datname IN ('${creds.db_name}', '${replacedName}') ORDER BY 1`,
      );
    if ((await admin('GET', `/api/database/admin/restores/${restore.body.id}`)).body.phase === 'grace') {
      const during = await dbs();
      expect(during.find((d) => d.datname === replacedName)?.datallowconn).toBe(false);
    }
    await waitForRestore(restore.body.id, ['done']);
    expect((await dbs()).map((d) => d.datname)).toEqual([creds.db_name]);
  });
});

describe('restore as a copy', () => {
  it('restores into another allocation of the same customer: both exist, isolated, each with its own login', async () => {
    const { ids, creds } = await allocate(f, newIds());
    await asTenant(creds, SCHEMA);
    const before = await snapshotOf(creds);
    const backup = await backupNow(ids.instance_id);

    const staging = await allocate(f, { ...newIds(), customer_id: ids.customer_id });
    const restore = await admin('POST', `/api/database/admin/backups/${backup.id}/restore`, {
      mode: 'copy',
      target_instance_id: staging.ids.instance_id,
    });
    expect(restore.status, JSON.stringify(restore.body)).toBe(202);
    await waitForRestore(restore.body.id, ['grace', 'dropping_old', 'done']);

    expect(await snapshotOf(staging.creds)).toEqual(before);
    expect(await snapshotOf(creds)).toEqual(before);
    expect(staging.creds.db_name).not.toBe(creds.db_name);
    // Isolated: writes on one do not reach the other, and neither login opens the other database.
    await asTenant(staging.creds, 'DELETE FROM app.items');
    expect((await snapshotOf(creds)).items).toBe(5000);
    for (const [who, other] of [
      [staging.creds, creds],
      [creds, staging.creds],
    ] as const) {
      const client = new pg.Client({
        host: who.db_host,
        port: who.db_port,
        user: who.db_user,
        password: who.db_password,
        database: other.db_name,
        ssl: { rejectUnauthorized: false },
      });
      client.on('error', () => {});
      await expect(client.connect()).rejects.toThrow(/permission denied|not permitted|no pg_hba/);
      await client.end().catch(() => {});
    }
  });
});

describe('the typed client', () => {
  it('takes, lists and reads backups and follows a restore through database-service', async () => {
    // database-service in this process: the client's fetch goes through app.inject.
    const inject: typeof fetch = async (input, init) => {
      const url = new URL(String(input));
      const res = await f.app.inject({
        method: (init?.method ?? 'GET') as 'GET',
        url: `${url.pathname}${url.search}`,
        headers: init?.headers as Record<string, string>,
        ...(init?.body ? { payload: String(init.body) } : {}),
      });
      return new Response(res.body, {
        status: res.statusCode,
        headers: res.headers as Record<string, string>,
      });
    };
    const client = createDatabaseServiceClient({
      baseUrl: 'http://database-service.test',
      token: f.allocateToken,
      adminToken: f.adminToken,
      fetch: inject,
    });
    const { ids, creds } = await allocate(f, newIds());
    await asTenant(creds, 'CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 7)');
    const started = await client.startBackup(ids.instance_id);
    expect(started.status).toBe('running');
    await waitFor(
      async () => (await client.getBackup(started.id))?.status === 'completed',
      60_000,
      'the backup',
    );
    const done = (await client.getBackup(started.id))!;
    expect(done.status, done.error ?? '').toBe('completed');
    expect(done.manifest?.row_counts).toEqual({ 'public.t': 7 });
    expect(
      (await client.listBackups(ids.instance_id, { status: 'completed' })).backups.map((b) => b.id),
    ).toEqual([started.id]);
    expect(await client.getBackup(crypto.randomUUID())).toBeNull();
    await asTenant(creds, 'TRUNCATE t');
    const restore = await client.restoreBackup(started.id, { mode: 'replace' });
    await waitFor(
      async () => ['grace', 'dropping_old', 'done'].includes((await client.getRestore(restore.id))!.phase),
      60_000,
      'the restore',
    );
    expect(await asTenant(creds, 'SELECT count(*)::int AS n FROM t')).toEqual([{ n: 7 }]);
    await expect(client.restoreBackup(crypto.randomUUID(), { mode: 'replace' })).rejects.toMatchObject({
      status: 404,
    });
  });
});

describe('refusals', () => {
  it('answers unknown ids, another customer, a same-instance copy and a store that is down clearly, recording nothing', async () => {
    const { ids, creds } = await allocate(f, newIds());
    await asTenant(creds, 'CREATE TABLE t (i int); INSERT INTO t VALUES (1)');
    const backup = await backupNow(ids.instance_id);
    const other = await allocate(f, newIds());
    const unknown = crypto.randomUUID();
    const restoresBefore = await f.db.selectFrom('tenant_restores').select('id').execute();

    const answers = [
      await admin('POST', '/api/database/admin/backups', { instance_id: unknown }),
      await admin('GET', `/api/database/admin/backups/${unknown}`),
      await admin('POST', `/api/database/admin/backups/${unknown}/restore`, { mode: 'replace' }),
      await admin('POST', `/api/database/admin/backups/${backup.id}/restore`, {
        mode: 'copy',
        target_instance_id: other.ids.instance_id,
      }),
      await admin('POST', `/api/database/admin/backups/${backup.id}/restore`, {
        mode: 'copy',
        target_instance_id: ids.instance_id,
      }),
      await admin('POST', `/api/database/admin/backups/${backup.id}/restore`, { mode: 'overwrite' }),
      await admin('GET', `/api/database/admin/restores/${unknown}`),
      await f.api('POST', '/api/database/admin/backups', { instance_id: ids.instance_id }), // allocate token
    ];
    expect(answers.map((a) => a.status)).toEqual([404, 404, 404, 409, 400, 400, 404, 403]);
    expect(answers[3]!.body.message).toMatch(/another customer/);
    // A suspended allocation is not restored into (the swap would open its login again).
    expect(
      (await admin('POST', `/api/database/admin/allocations/${ids.instance_id}/suspend`, {})).status,
    ).toBe(200);
    const suspended = await admin('POST', `/api/database/admin/backups/${backup.id}/restore`, {
      mode: 'replace',
    });
    expect([suspended.status, suspended.body.message]).toEqual([409, expect.stringMatching(/suspended/)]);
    expect(
      (await admin('POST', `/api/database/admin/allocations/${ids.instance_id}/resume`, {})).status,
    ).toBe(200);

    await s3.stop();
    try {
      const down = [
        await admin('POST', '/api/database/admin/backups', { instance_id: ids.instance_id }),
        await admin('POST', `/api/database/admin/backups/${backup.id}/restore`, { mode: 'replace' }),
      ];
      expect(down.map((a) => a.status)).toEqual([503, 503]);
      expect(JSON.stringify(down.map((a) => a.body))).not.toContain(s3.secretAccessKey);
    } finally {
      await s3.start();
    }
    const listed = await admin('GET', `/api/database/admin/backups?instance_id=${ids.instance_id}`);
    expect(listed.body.total_count).toBe(1);
    expect(await f.db.selectFrom('tenant_restores').select('id').execute()).toEqual(restoresBefore);
  });

  it('refuses a release, a rotation, a move, a backup and another restore while a restore works on the allocation', async () => {
    const { ids, creds } = await allocate(f, newIds());
    await asTenant(creds, 'CREATE TABLE t (i int)');
    const backup = await backupNow(ids.instance_id);
    // A restore caught in its restoring phase (recorded, no job: nothing moves it on).
    const restore = await f.db
      .insertInto('tenant_restores')
      .values({
        backup_id: backup.id,
        tenant_database_id: backup.tenant_database_id as string,
        mode: 'replace',
        phase: 'restoring',
        requested_by: 'test',
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    try {
      const answers = [
        await f.api('DELETE', `/api/database/allocations/${ids.instance_id}`),
        await f.api('POST', `/api/database/allocations/${ids.instance_id}/rotate-credentials`, {}),
        await admin('POST', '/api/database/admin/moves', { instance_id: ids.instance_id }),
        await admin('POST', '/api/database/admin/backups', { instance_id: ids.instance_id }),
        await admin('POST', `/api/database/admin/backups/${backup.id}/restore`, { mode: 'replace' }),
      ];
      expect(answers.map((a) => a.status)).toEqual([409, 409, 409, 409, 409]);
      expect(answers[0]!.body.message).toMatch(/being restored/);
      expect(await canLogin(creds)).toBe(true);
    } finally {
      await f.db.deleteFrom('tenant_restores').where('id', '=', restore.id).execute();
    }
  });

  it('fails a backup no fitting pg_dump can make (a PostgreSQL 17 server, tools of 15 only), says why, and keeps no object', async () => {
    const pg17 = await makePool(f, { name: 'backups-17', priority: 1, postgres_major: 17 });
    const { ids, creds } = await allocate(f, newIds());
    expect(creds.db_server_id).toBe(pg17.id);
    const failed = await backupNow(ids.instance_id, ['failed']);
    expect(failed.error).toMatch(/no pg_dump\/pg_restore\/psql of PostgreSQL 17 or newer/);
    expect(failed.manifest).toBeNull();
    const listed = await admin(
      'GET',
      `/api/database/admin/backups?instance_id=${ids.instance_id}&status=completed`,
    );
    expect(listed.body.total_count).toBe(0);
    // Fleet-wide, the failed ones: this one among them, nothing else in that list.
    const failedAll = await admin('GET', '/api/database/admin/backups?status=failed');
    expect(failedAll.body.backups.map((b: { id: string }) => b.id)).toContain(failed.id);
    expect(failedAll.body.backups.every((b: { status: string }) => b.status === 'failed')).toBe(true);
    const restore = await admin('POST', `/api/database/admin/backups/${failed.id}/restore`, {
      mode: 'replace',
    });
    expect(restore.status).toBe(409);
    // Nothing of it in the store.
    const { createS3Store } = await import('@tenantdb/backups');
    const store = createS3Store({
      bucket: s3.bucket,
      prefix: 'test/',
      region: 'us-east-1',
      endpoint: s3.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
    expect(await store.list(`${failed.tenant_database_id}/`)).toEqual([]);
  });
});

describe('nothing secret', () => {
  it('in backup rows, manifests, restore rows or job payloads (logs: the harness checks them at close)', async () => {
    const rows = await f.db.selectFrom('backups').selectAll().execute();
    const restores = await f.db.selectFrom('tenant_restores').selectAll().execute();
    const jobs = k.enqueued.filter((j) => j.name === 'backup-tenant' || j.name === 'restore-tenant');
    expect(jobs.length).toBeGreaterThanOrEqual(2);
    for (const job of jobs)
      expect(Object.keys(job.payload as object)).toEqual([`${job.name.split('-')[0]}_id`]);
    const text = JSON.stringify({ rows, restores, jobs });
    expect(rows.length).toBeGreaterThan(2);
    for (const secret of f.seenSecrets)
      expect(text.includes(secret), 'a secret in a row or payload').toBe(false);
  });
});

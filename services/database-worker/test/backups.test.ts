// Backups and restores with real servers (local driver, PostgreSQL 15 and 17), a real worker and
// database-service, and a real S3-protocol server (s3rver from npm, started here on a free port):
// a backup, damage, a restore that replaces (data as it was, the tenant's password still works,
// the replaced database closed then dropped); a restore as a copy into another allocation of the
// customer (both there, isolated); a dump that cannot be made is never listed as a backup; bad
// requests and a store that is down change nothing; nothing secret in manifests, payloads, logs.

import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import type { DbServer } from '@tenantdb/catalog';
import { createDatabaseServiceClient } from '@tenantdb/contracts';
import { canLogin, type S3TestServer, startS3Server, type TenantCredentials } from '@tenantdb/testkit';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asAdmin, type Fleet, newIds, runReconcile, sleep, startFleet, waitFor } from './harness';
import { allocate, asTenant, makePool } from './moves-kit';

let f: Fleet;
let s3: S3TestServer;
let pool: DbServer;
/** Every job database-service enqueued, as enqueued (the payloads jobs carry). */
const enqueued: { name: string; payload: unknown }[] = [];

beforeAll(async () => {
  s3 = await startS3Server();
  f = await startFleet({
    replicas: 1,
    env: {
      TENANTDB_BACKUP_STORE: 's3',
      TENANTDB_BACKUP_S3_BUCKET: s3.bucket,
      TENANTDB_BACKUP_S3_PREFIX: 'test/',
      TENANTDB_BACKUP_S3_ENDPOINT: s3.endpoint,
      TENANTDB_BACKUP_S3_FORCE_PATH_STYLE: 'true',
      TENANTDB_BACKUP_S3_ACCESS_KEY_ID: s3.accessKeyId,
      TENANTDB_BACKUP_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
      TENANTDB_RESTORE_GRACE_MS: '2000',
      // The test runs the scheduler itself.
      TENANTDB_BACKUP_SCHEDULE_MS: String(3_600_000),
      TENANTDB_BACKUPS_PER_SERVER: '1',
      TENANTDB_BACKUP_DRILL_INTERVAL_MS: String(3_600_000),
    },
  });
  f.seenSecrets.add(s3.secretAccessKey);
  const enqueue = f.queues.enqueue.bind(f.queues);
  f.queues.enqueue = ((name, payload, opts) => {
    enqueued.push({ name, payload });
    return enqueue(name, payload, opts);
  }) as typeof f.queues.enqueue;
  pool = await makePool(f, { name: 'backups-a', priority: 10 });
}, 180_000);

afterAll(async () => {
  await f?.close();
  await s3?.close();
}, 120_000);

const admin = (method: 'GET' | 'POST', url: string, body?: unknown) => f.api(method, url, body, f.adminToken);

async function backupNow(instanceId: string, statuses = ['completed']) {
  const started = await admin('POST', '/api/database/admin/backups', { instance_id: instanceId });
  expect(started.status, JSON.stringify(started.body)).toBe(202);
  expect(started.body.status).toBe('running');
  let last: Record<string, unknown> = {};
  await waitFor(
    async () => {
      last = (await admin('GET', `/api/database/admin/backups/${started.body.id}`)).body;
      return last.status !== 'running';
    },
    120_000,
    'the backup to finish',
  );
  expect(statuses, JSON.stringify(last)).toContain(last.status);
  return last as {
    id: string;
    status: string;
    manifest: Record<string, unknown>;
    error: string | null;
  } & Record<string, unknown>;
}

async function waitForRestore(id: string, phases: string[]) {
  let last: Record<string, unknown> = {};
  await waitFor(
    async () => {
      last = (await admin('GET', `/api/database/admin/restores/${id}`)).body;
      if (last.phase === 'failed' && !phases.includes('failed'))
        throw new Error(`restore failed: ${last.error}`);
      return phases.includes(last.phase as string);
    },
    120_000,
    `restore ${id} to reach ${phases.join('/')}`,
  );
  return last;
}

const SCHEMA = `
  CREATE SCHEMA app;
  SET search_path = app;
  CREATE TABLE items (id bigserial PRIMARY KEY, v integer NOT NULL, note text);
  CREATE INDEX items_v ON items (v);
  CREATE TABLE events (at timestamptz DEFAULT now(), what text); -- no primary key
  CREATE SEQUENCE ticket_seq START 1000;
  CREATE VIEW recent AS SELECT id, v FROM items ORDER BY id DESC LIMIT 10;
  INSERT INTO items (v, note) SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g;
  INSERT INTO events (what) SELECT 'e' || g FROM generate_series(1, 42) g;
  SELECT setval('ticket_seq', 1234);`;

async function snapshotOf(c: TenantCredentials) {
  const [row] = await asTenant<{ items: number; sum: string; events: number; ticket: string }>(
    c,
    `SELECT (SELECT count(*)::int FROM app.items) AS items, (SELECT sum(v)::text FROM app.items) AS sum,
            (SELECT count(*)::int FROM app.events) AS events, (SELECT last_value::text FROM app.ticket_seq) AS ticket`,
  );
  return row!;
}

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

describe('scheduled backups and retention', () => {
  it('backs up due tenants of a plan with an interval, spread over it, at most TENANTDB_BACKUPS_PER_SERVER per server; expired backups go', async () => {
    await sql`INSERT INTO plans (plan_tier, placement, connection_limit, cpu_limit, memory_limit_mb, storage_size_gb, backup_interval_hours, backup_retention_days, created_at, updated_at)
              SELECT 'backed', placement, connection_limit, cpu_limit, memory_limit_mb, storage_size_gb, 1, 1, now(), now()
                FROM plans WHERE plan_tier = 'standard'`.execute(f.db);
    const tenants = [];
    for (let i = 0; i < 3; i++) tenants.push(await allocate(f, newIds('backed')));
    const ids = tenants.map((t) => (t.creds as unknown as { tenant_database_id: string }).tenant_database_id);
    const serverOf = new Map(tenants.map((t, i) => [ids[i]!, t.creds.db_server_id]));
    const worker = f.workers[0]!;
    const tick = () =>
      worker.handlers['schedule-backups'](
        {},
        { job: undefined as never, log: worker.deps.logger },
      ) as Promise<{
        started: number;
        expired: number;
      }>;
    const rowsOf = () =>
      f.db.selectFrom('backups').selectAll().where('tenant_database_id', 'in', ids).execute();

    // Spread: a tenant never backed up is due at ready_at plus its own offset in the interval.
    const offsets = await sql<{ id: string; off: number }>`
      SELECT id, abs(hashtext(id::text)::bigint) % 3600 AS off FROM tenant_databases WHERE id IN (${sql.join(ids)})`.execute(
      f.db,
    );
    const offsetOf = new Map(offsets.rows.map((r) => [r.id, Number(r.off)]));
    const readyAgo = async (id: string, seconds: number) =>
      sql`UPDATE tenant_databases SET ready_at = now() - make_interval(secs => ${seconds}) WHERE id = ${id}`.execute(
        f.db,
      );
    for (const id of ids) await readyAgo(id, offsetOf.get(id)! - 120); // two minutes before its time
    expect(await tick()).toEqual({ started: 0, expired: 0 });
    for (const id of ids) await readyAgo(id, offsetOf.get(id)! + 120); // two minutes past it
    // One of them ready for two hours without a backup: overdue (1.5 intervals), in the metrics.
    await readyAgo(ids[2]!, 7200);
    const gauge = async (name: string) => {
      await sleep(1100); // the figures are read at most once a second
      const text = (await worker.app.inject({ method: 'GET', url: '/metrics' })).body;
      return Number(new RegExp(`^${name}(?:{[^}]*})? (\\S+)$`, 'm').exec(text)?.[1]);
    };
    expect(await gauge('tenantdb_backup_tenants_overdue')).toBe(1);
    expect(await gauge('tenantdb_backup_oldest_latest_age_seconds')).toBeGreaterThanOrEqual(7200);

    // The cap: on each server, at most perServer minus the dumps running there (rows counted).
    const dueNow = (perServer: number) => worker.deps.backups.dueForBackup({ perServer, limit: 100 });
    const perServerOf = (list: { db_server_id: string }[]) => {
      const counts = new Map<string, number>();
      for (const r of list) counts.set(r.db_server_id, (counts.get(r.db_server_id) ?? 0) + 1);
      return counts;
    };
    const ours = perServerOf(ids.map((id) => ({ db_server_id: serverOf.get(id)! })));
    expect((await dueNow(5)).map((d) => d.tenant_database_id).sort()).toEqual([...ids].sort());
    expect(perServerOf(await dueNow(1))).toEqual(new Map([...ours.keys()].map((k) => [k, 1])));
    // A dump of the first tenant running (recorded, no job): its server takes no other now.
    const held = await worker.deps.backups.start({
      id: crypto.randomUUID(),
      tenant_database_id: ids[0]!,
      instance_id: null,
      customer_id: null,
      db_server_id: serverOf.get(ids[0]!)!,
      reason: 'manual',
      requested_by: 'test',
    });
    const heldServer = serverOf.get(ids[0]!)!;
    expect((await dueNow(1)).filter((d) => d.db_server_id === heldServer)).toEqual([]);
    expect((await dueNow(2)).filter((d) => d.db_server_id === heldServer)).toHaveLength(
      Math.min(1, ours.get(heldServer)! - 1),
    );
    await f.db.deleteFrom('backups').where('id', '=', held.backup.id).execute();

    // The scheduler itself, until each has a backup: never more than one dump per server at once.
    for (
      let round = 0;
      round < 6 && (await rowsOf()).filter((r) => r.status === 'completed').length < 3;
      round++
    ) {
      expect((await tick()).started).toBeGreaterThanOrEqual(1);
      const running = (await rowsOf()).filter((r) => r.status === 'running');
      expect([...perServerOf(running).values()].every((n) => n <= 1)).toBe(true);
      await waitFor(async () => (await rowsOf()).every((r) => r.status !== 'running'), 60_000, 'the dumps');
    }
    const rows = await rowsOf();
    expect(rows.map((r) => [r.status, r.reason])).toEqual(Array(3).fill(['completed', 'scheduled']));
    expect(new Set(rows.map((r) => r.tenant_database_id)).size).toBe(3);
    expect(await gauge('tenantdb_backup_tenants_overdue')).toBe(0);
    // Backed up within the interval: none due.
    expect(await tick()).toEqual({ started: 0, expired: 0 });
    // Retention (1 day on this plan): an expired backup loses its object, then its row.
    const expiredOne = rows[0]!;
    expect(expiredOne.expires_at!.getTime()).toBeGreaterThan(Date.now() + 23 * 3600_000);
    await sql`UPDATE backups SET expires_at = now() - interval '1 second' WHERE id = ${expiredOne.id}`.execute(
      f.db,
    );
    expect(await worker.deps.backupStore!.head(expiredOne.object_key)).toBeDefined();
    expect(await tick()).toMatchObject({ expired: 1 });
    expect(await worker.deps.backupStore!.head(expiredOne.object_key)).toBeUndefined();
    expect((await rowsOf()).map((r) => r.id)).not.toContain(expiredOne.id);
  });
});

describe('restore drills', () => {
  it('passes a good backup and fails those whose object was damaged (a flipped bit, a cut), recording each; the tenant is untouched', async () => {
    const good = await allocate(f, newIds());
    const bad = await allocate(f, newIds());
    const cut = await allocate(f, newIds());
    for (const t of [good, bad, cut]) await asTenant(t.creds, SCHEMA);
    const [goodBackup, badBackup, cutBackup] = [
      await backupNow(good.ids.instance_id),
      await backupNow(bad.ids.instance_id),
      await backupNow(cut.ids.instance_id),
    ];
    const worker = f.workers[0]!;
    const store = worker.deps.backupStore!;
    // Damage in the store: one byte in the middle of the object flipped.
    const keyOf = async (id: string) =>
      (await f.db.selectFrom('backups').select('object_key').where('id', '=', id).executeTakeFirstOrThrow())
        .object_key;
    const raw = await buffer(await store.get(await keyOf(badBackup.id)));
    raw[Math.floor(raw.length / 2)]! ^= 0x10;
    await store.put(await keyOf(badBackup.id), Readable.from([raw]));
    // And one truncated (its last 1000 bytes gone).
    const whole = await buffer(await store.get(await keyOf(cutBackup.id)));
    await store.put(await keyOf(cutBackup.id), Readable.from([whole.subarray(0, whole.length - 1000)]));
    // Only these two are due a drill (the file's other backups count as verified just now).
    await sql`UPDATE backups SET last_verified_at = now() WHERE id NOT IN (${goodBackup.id}, ${badBackup.id}, ${cutBackup.id})`.execute(
      f.db,
    );

    const drilled = await worker.handlers['verify-backups'](
      {},
      { job: undefined as never, log: worker.deps.logger },
    );
    expect(drilled).toEqual({ passed: 1, failed: 2 });
    const cutRow = (await admin('GET', `/api/database/admin/backups/${cutBackup.id}`)).body;
    expect(cutRow).toMatchObject({ last_verify_result: 'failed' });
    expect(cutRow.last_verify_error).toMatch(/truncated|failed authentication/);
    const [g, b] = [
      (await admin('GET', `/api/database/admin/backups/${goodBackup.id}`)).body,
      (await admin('GET', `/api/database/admin/backups/${badBackup.id}`)).body,
    ];
    expect(g).toMatchObject({ last_verify_result: 'passed', last_verify_error: null });
    expect(b).toMatchObject({ last_verify_result: 'failed' });
    expect(b.last_verify_error).toMatch(/failed authentication/);
    expect(Date.parse(g.last_verified_at)).toBeGreaterThan(Date.now() - 60_000);
    // No scratch database stays; the tenants' own are as they were.
    const left = await asAdmin<{ n: number }>(
      f,
      pool,
      "SELECT count(*)::int AS n FROM pg_database WHERE datname LIKE 'tenantdb_drill_%'",
    );
    expect(left).toEqual([{ n: 0 }]);
    expect((await snapshotOf(bad.creds)).items).toBe(5000);
    // Verified within the day: not drilled again.
    expect(
      await worker.handlers['verify-backups']({}, { job: undefined as never, log: worker.deps.logger }),
    ).toEqual({
      passed: 0,
      failed: 0,
    });
  });
});

describe('lost jobs', () => {
  it('reconcile gives a backup and a restore whose jobs were lost their jobs again; both finish', async () => {
    const { ids, creds } = await allocate(f, newIds());
    await asTenant(creds, 'CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 5)');
    const tenantId = (creds as unknown as { tenant_database_id: string }).tenant_database_id;
    // A backup recorded as running an hour ago, its job gone (a worker killed past its retries).
    const lost = await f.workers[0]!.deps.backups.start({
      id: crypto.randomUUID(),
      tenant_database_id: tenantId,
      instance_id: ids.instance_id,
      customer_id: ids.customer_id,
      db_server_id: creds.db_server_id,
      reason: 'manual',
      requested_by: 'test',
    });
    await sql`UPDATE backups SET started_at = now() - interval '1 hour' WHERE id = ${lost.backup.id}`.execute(
      f.db,
    );
    await runReconcile(f);
    await waitFor(
      async () =>
        (await admin('GET', `/api/database/admin/backups/${lost.backup.id}`)).body.status === 'completed',
      60_000,
      'the resumed backup',
    );
    // A restore recorded as pending a while ago, its job gone.
    await asTenant(creds, 'DELETE FROM t');
    const restore = await f.db
      .insertInto('tenant_restores')
      .values({
        backup_id: lost.backup.id,
        tenant_database_id: tenantId,
        mode: 'replace',
        phase: 'pending',
        requested_by: 'test',
        updated_at: new Date(Date.now() - 3_600_000),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    await runReconcile(f);
    await waitForRestore(restore.id, ['grace', 'dropping_old', 'done']);
    expect(await asTenant(creds, 'SELECT count(*)::int AS n FROM t')).toEqual([{ n: 5 }]);
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
    const jobs = enqueued.filter((j) => j.name === 'backup-tenant' || j.name === 'restore-tenant');
    expect(jobs.length).toBeGreaterThanOrEqual(2);
    for (const job of jobs)
      expect(Object.keys(job.payload as object)).toEqual([`${job.name.split('-')[0]}_id`]);
    const text = JSON.stringify({ rows, restores, jobs });
    expect(rows.length).toBeGreaterThan(2);
    for (const secret of f.seenSecrets)
      expect(text.includes(secret), 'a secret in a row or payload').toBe(false);
  });
});

// Scheduled backups, retention, restore drills and lost jobs, with real servers, a real worker and
// a real S3-protocol server (s3rver, backups-kit.ts): due tenants spread over their plan's
// interval and capped per server, expired backups deleted, damaged objects failing their drills,
// and reconcile resuming a backup and a restore whose jobs were lost.
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import type { DbServer } from '@tenantdb/catalog';
import { sql } from 'kysely';
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
import { asAdmin, type Fleet, newIds, runReconcile, sleep, waitFor } from './harness';
import { allocate, asTenant } from './moves-kit';

let k: BackupFleet;
let f: Fleet;
let pool: DbServer;

beforeAll(async () => {
  k = await startBackupFleet('backups-b');
  ({ f, pool } = k);
}, 180_000);

afterAll(async () => {
  await k?.close();
}, 120_000);

const admin = (method: 'GET' | 'POST', url: string, body?: unknown) => adminOf(f)(method, url, body);
const backupNow = (instanceId: string, statuses?: string[]) => backupNowIn(f, instanceId, statuses);
const waitForRestore = (id: string, phases: string[]) => waitForRestoreIn(f, id, phases);

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

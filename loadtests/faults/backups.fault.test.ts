// Backups and restores under faults: both database-workers SIGKILLed while a pg_dump streams into
// the store (the dev stack's directory store), and again while a restore streams into its new
// database, with the allocation load running beside it. The backup is never listed as completed
// while cut, nothing but a hidden partial file is in the store, and once the workers are back the
// same backup runs again to completion (its job is re-delivered) and restores into a copy with the
// tenant's rows; the tenant keeps its own database through a cut restore, which then finishes.
import { randomUUID } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type TenantCredentials, tenantSsl } from '@tenantdb/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FaultStack, startFaultStack, waitUntil } from './stack';

let s: FaultStack;
beforeAll(async () => {
  s = await startFaultStack();
  await s.waitForCapacity(5);
});
afterAll(async () => {
  await s?.close();
});

async function asTenant(c: TenantCredentials, text: string) {
  const client = new pg.Client({
    host: c.db_host,
    port: c.db_port,
    database: c.db_name,
    user: c.db_user,
    password: c.db_password,
    ssl: tenantSsl(c),
  });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query(text)).rows;
  } finally {
    await client.end();
  }
}

/** Files in the tenant's directory of the store: [name, bytes]. */
async function filesOf(dir: string): Promise<[string, number][]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return Promise.all(names.map(async (n) => [n, (await stat(join(dir, n))).size] as [string, number]));
}

describe('database-worker SIGKILL during backups and restores', () => {
  it('leaves no completed backup and nothing visible in the store; the backup then completes and restores', async () => {
    const ids = { instance_id: randomUUID(), customer_id: randomUUID(), plan_tier: 'standard' };
    let landed = '';
    let backupId = '';
    let tenantId = '';
    const report = await s.underLoad(
      {
        name: 'database-worker SIGKILL during a backup',
        injected: 'a pg_dump streaming into the directory store; both workers SIGKILLed mid-dump, restarted',
      },
      async () => {
        const first = await s.allocate(ids);
        expect(first.status).toBe(200);
        tenantId = first.body.tenant_database_id;
        // Enough data (tens of MB, poorly compressible) that the dump lasts long enough to be hit.
        await asTenant(
          first.body,
          `CREATE SCHEMA app; CREATE TABLE app.big (id bigserial PRIMARY KEY, v text);
           INSERT INTO app.big (v) SELECT md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text)
             FROM generate_series(1, 400000) g;`,
        );
        const started = await s.admin('POST', '/api/database/admin/backups', {
          instance_id: ids.instance_id,
        });
        expect(started.status).toBe(202);
        backupId = started.body.id;
        const dir = join(s.stack.stateDir, 'backups', tenantId);
        // Killed once the partial object has bytes in it (the dump is streaming).
        await waitUntil(
          async () => (await filesOf(dir)).some(([n, size]) => n.startsWith('.partial-') && size > 0),
          120_000,
          'the dump to be streaming',
        );
        await s.workers.kill();
        const cut = await s.admin('GET', `/api/database/admin/backups/${backupId}`);
        landed = cut.body.status;
        const visible = (await filesOf(dir)).filter(([n]) => !n.startsWith('.'));
        if (landed === 'running') {
          // Cut mid-dump: nothing restorable is listed, nothing visible in the store.
          expect(visible).toEqual([]);
          const listed = await s.admin(
            'GET',
            `/api/database/admin/backups?instance_id=${ids.instance_id}&status=completed`,
          );
          expect(listed.body.total_count).toBe(0);
          const restore = await s.admin('POST', `/api/database/admin/backups/${backupId}/restore`, {
            mode: 'replace',
          });
          expect(restore.status).toBe(409);
        }
        await s.workers.start();
        // The job comes back (a stalled job is re-delivered); asking again would also resume it.
        await waitUntil(
          async () =>
            (await s.admin('GET', `/api/database/admin/backups/${backupId}`)).body.status !== 'running',
          180_000,
          'the backup to finish after the restart',
        );
        const done = (await s.admin('GET', `/api/database/admin/backups/${backupId}`)).body;
        expect(done.status, done.error).toBe('completed');
        expect(done.manifest.row_counts).toMatchObject({ 'app.big': 400000 });
        // The object is whole and alone: the killed attempt's partial was replaced.
        expect((await filesOf(dir)).map(([n]) => n)).toEqual([`${backupId}.tdbk`]);
      },
    );
    console.log(`backup SIGKILL landed while the backup was ${landed}`);
    expect(report.violations).toEqual([]);

    // The completed backup restores, as a copy for another instance of the customer.
    const staging = { instance_id: randomUUID(), customer_id: ids.customer_id, plan_tier: 'standard' };
    const copy = await s.allocate(staging);
    expect(copy.status).toBe(200);
    const restore = await s.admin('POST', `/api/database/admin/backups/${backupId}/restore`, {
      mode: 'copy',
      target_instance_id: staging.instance_id,
    });
    expect(restore.status).toBe(202);
    await waitUntil(
      async () =>
        ['grace', 'dropping_old', 'done', 'failed'].includes(
          (await s.admin('GET', `/api/database/admin/restores/${restore.body.id}`)).body.phase,
        ),
      180_000,
      'the restore',
    );
    expect((await s.admin('GET', `/api/database/admin/restores/${restore.body.id}`)).body.phase).not.toBe(
      'failed',
    );
    expect(await asTenant(copy.body, 'SELECT count(*)::int AS n FROM app.big')).toEqual([{ n: 400000 }]);
  });

  it('a restore cut mid-stream leaves the tenant on its own database; the restore then finishes', async () => {
    const ids = { instance_id: randomUUID(), customer_id: randomUUID(), plan_tier: 'standard' };
    let landed = '';
    const report = await s.underLoad(
      {
        name: 'database-worker SIGKILL during a restore',
        injected: 'a restore streaming into its new database; both workers SIGKILLed, restarted',
      },
      async () => {
        const first = await s.allocate(ids);
        expect(first.status).toBe(200);
        await asTenant(
          first.body,
          `CREATE SCHEMA app; CREATE TABLE app.big (id bigserial PRIMARY KEY, v text);
           INSERT INTO app.big (v) SELECT md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 400000) g;`,
        );
        const started = await s.admin('POST', '/api/database/admin/backups', {
          instance_id: ids.instance_id,
        });
        await waitUntil(
          async () =>
            (await s.admin('GET', `/api/database/admin/backups/${started.body.id}`)).body.status !==
            'running',
          120_000,
          'the backup',
        );
        await asTenant(first.body, 'DELETE FROM app.big WHERE id > 1000');
        const restore = await s.admin('POST', `/api/database/admin/backups/${started.body.id}/restore`, {
          mode: 'replace',
        });
        expect(restore.status, JSON.stringify(restore.body)).toBe(202);
        const phase = async () =>
          (await s.admin('GET', `/api/database/admin/restores/${restore.body.id}`)).body.phase;
        await waitUntil(async () => (await phase()) !== 'pending', 60_000, 'the restore to start');
        await s.workers.kill();
        landed = await phase();
        if (landed === 'restoring') {
          // Cut before the swap: the tenant is still on its own (damaged) database, and logs in.
          expect(await asTenant(first.body, 'SELECT count(*)::int AS n FROM app.big')).toEqual([{ n: 1000 }]);
        }
        await s.workers.start();
        await waitUntil(
          async () => ['grace', 'dropping_old', 'done', 'failed'].includes(await phase()),
          180_000,
          'the restore to finish after the restart',
        );
        expect(await phase()).not.toBe('failed');
        expect(await asTenant(first.body, 'SELECT count(*)::int AS n FROM app.big')).toEqual([{ n: 400000 }]);
      },
    );
    console.log(`restore SIGKILL landed while the restore was ${landed}`);
    expect(report.violations).toEqual([]);
  });
});

// database-worker SIGKILLed in the middle of a quota transition, under load. A tenant over its
// quota is sampled while a transaction on its pool server holds a catalog row its restriction
// must change (so the restriction batch waits there); the catalog has already moved it to
// `restricted` (access_pending) when both workers are killed, and the waiting batch is ended with
// them. The tenant is then half restricted: the catalog says restricted, the server lets it write.
// After a restart and the reconciler, server and catalog agree (the access invariant) and the
// tenant's writes are refused.
import { randomUUID } from 'node:crypto';
import { tenantSsl } from '@tenantdb/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FaultStack, startFaultStack, waitUntil } from './stack';

let s: FaultStack;
beforeAll(async () => {
  s = await startFaultStack({ TENANTDB_ACCESS_REPAIR_AFTER_MS: '2000' });
  await s.waitForCapacity(3);
  const plan = await s.admin('POST', '/api/database/admin/plans', {
    plan_tier: 'capped',
    placement: 'shared',
    connection_limit: 5,
    storage_quota_mb: 30,
    quota_warn_fraction: 0.5,
    quota_lift_fraction: 0.3,
    quota_grace_seconds: 0,
  });
  expect(plan.status, JSON.stringify(plan.body)).toBe(201);
});
afterAll(async () => {
  await s?.close();
});

type Creds = { db_host: string; db_port: number; db_name: string; db_user: string; db_password: string };

async function allocate(): Promise<{ instanceId: string; creds: Creds & { db_server_id: string } }> {
  const instanceId = randomUUID();
  const body = { instance_id: instanceId, customer_id: randomUUID(), plan_tier: 'capped' };
  const deadline = Date.now() + 60_000;
  for (;;) {
    const res = await fetch(`${s.stack.urls.databaseService}/api/database/allocate`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${s.stack.secrets.allocateToken}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify(body),
    });
    if (res.status === 200)
      return { instanceId, creds: (await res.json()) as Creds & { db_server_id: string } };
    if (res.status !== 202 || Date.now() > deadline) throw new Error(`allocate answered ${res.status}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function asTenant(c: Creds): Promise<pg.Client> {
  const client = new pg.Client({
    host: c.db_host,
    port: c.db_port,
    database: c.db_name,
    user: c.db_user,
    password: c.db_password,
    ssl: tenantSsl(c as Parameters<typeof tenantSsl>[0]),
  });
  client.on('error', () => {});
  await client.connect();
  return client;
}

async function writes(c: Creds): Promise<boolean> {
  const client = await asTenant(c);
  try {
    await client.query(`INSERT INTO t VALUES (0, 'probe')`);
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === '42501') return false;
    throw err;
  } finally {
    await client.end().catch(() => {});
  }
}

const quotaState = async (instanceId: string) =>
  await s.db
    .selectFrom('tenant_databases')
    .select(['quota_state', 'access_pending'])
    .where('instance_id', '=', instanceId)
    .where('status', '=', 'ready')
    .executeTakeFirstOrThrow();

describe('database-worker killed mid-transition, under load', () => {
  it('leaves no tenant half restricted once the reconciler has run', async () => {
    const { instanceId, creds } = await allocate();
    s.acknowledged.set(instanceId, { instance_id: instanceId, credentials: creds, released: false });
    const t = await asTenant(creds);
    await t.query('CREATE TABLE t (id int, pad text)');
    await t.query(`INSERT INTO t SELECT g, repeat(md5(random()::text), 31) FROM generate_series(1, 36000) g`);
    await t.end();
    await s.queues.enqueue('sample-usage-server', { server_id: creds.db_server_id });
    await waitUntil(async () => (await quotaState(instanceId)).quota_state === 'warned', 60_000, 'warned');

    const server = (await s.servers()).find((r) => r.id === creds.db_server_id)!;
    const adminIn = (database: string) =>
      new pg.Client({
        host: server.host!,
        port: server.port!,
        user: server.admin_user!,
        password: s.secrets.decrypt(server.admin_password_enc!, server.id),
        database,
      });
    const report = await s.underLoad(
      {
        name: 'database-worker SIGKILL mid-quota-transition',
        injected:
          "a tenant's restriction held on its pool server (a transaction holding its table's catalog row), both workers SIGKILLed after the catalog moved it to restricted; the held batch ended; restarted",
      },
      async () => {
        const holder = adminIn(creds.db_name);
        await holder.connect();
        const watcher = adminIn(server.admin_database);
        await watcher.connect();
        try {
          await holder.query('BEGIN');
          await holder.query('GRANT SELECT ON t TO PUBLIC'); // holds t's pg_class row
          await s.queues.enqueue('sample-usage-server', { server_id: creds.db_server_id });
          const blocked = async () =>
            (
              await watcher.query<{ pid: number }>(
                `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'
                    AND query LIKE '%REVOKE%'`,
                [creds.db_name],
              )
            ).rows;
          await waitUntil(
            async () => (await blocked()).length === 1,
            60_000,
            'the restriction held on the server',
          );
          expect(await quotaState(instanceId)).toEqual({ quota_state: 'restricted', access_pending: true });
          await s.workers.kill();
          // The batch the killed worker sent is ended (a dead client's statement could still finish).
          for (const { pid } of await blocked())
            await watcher.query('SELECT pg_terminate_backend($1)', [pid]);
          await holder.query('ROLLBACK');
        } finally {
          await holder.end().catch(() => {});
          await watcher.end().catch(() => {});
        }
        // Half restricted: the catalog says so, the server does not.
        expect(await writes(creds)).toBe(true);
        await s.workers.start();
      },
    );
    expect(report.violations).toEqual([]);
    expect(await quotaState(instanceId)).toEqual({ quota_state: 'restricted', access_pending: false });
    expect(await writes(creds)).toBe(false);
  });
});

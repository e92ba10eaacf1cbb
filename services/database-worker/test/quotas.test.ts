// The quota ladder, suspension and plan changes on a real pool server the fleet provisioned
// (local driver, tenants over TLS): a tenant that writes past its warn fraction is warned, past
// its quota restricted (grace 0 here), cannot write whatever it tries, can read, delete and
// truncate, and is lifted automatically once under the lower threshold; one audit event and one
// callback notice per transition. Suspension ends sessions and refuses logins until resume, with
// the same password; a plan upgrade lifts a restricted tenant at once; a placement change is 409.
// An event the process died before queueing is queued by the reconciler from the outbox.
import type { DbServer } from '@tenantdb/catalog';
import { applyQuotaTransition, quotaTransitions } from '@tenantdb/pool-server';
import { tenantSsl } from '@tenantdb/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pendingEvents } from '../src/jobs/reconcile-access';
import { activePool, canLogin, type Fleet, newIds, startFleet } from './harness';

let f: Fleet;
let pool: DbServer;
beforeAll(async () => {
  f = await startFleet({ replicas: 1 });
  pool = await activePool(f);
  for (const plan of [
    {
      plan_tier: 'tiny',
      connection_limit: 5,
      storage_quota_mb: 40,
      quota_warn_fraction: 0.5,
      quota_lift_fraction: 0.3,
    },
    { plan_tier: 'roomy', connection_limit: 9, storage_quota_mb: 1000 },
  ]) {
    const res = await f.api(
      'POST',
      '/api/database/admin/plans',
      { placement: 'shared', quota_grace_seconds: 0, ...plan },
      f.adminToken,
    );
    expect(res.status, JSON.stringify(res.body)).toBe(201);
  }
}, 120_000);
afterAll(() => f?.close());

type Creds = { db_host: string; db_port: number; db_name: string; db_user: string; db_password: string };

async function tenant(c: Creds): Promise<pg.Client> {
  const client = new pg.Client({
    host: c.db_host,
    port: c.db_port,
    database: c.db_name,
    user: c.db_user,
    password: c.db_password,
    ssl: tenantSsl(c as Parameters<typeof tenantSsl>[0]),
    connectionTimeoutMillis: 5_000,
  });
  client.on('error', () => {});
  await client.connect();
  return client;
}

async function outcome(client: pg.Client, text: string): Promise<string> {
  try {
    await client.query(text);
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

/** Rows of about 1 kB each that do not compress: `mb` MB more in table t. */
const grow = (c: pg.Client, mb: number) =>
  c.query(`INSERT INTO t SELECT g, repeat(md5(random()::text), 31) FROM generate_series(1, ${mb * 1000}) g`);

async function sample(): Promise<unknown> {
  const worker = f.workers[0]!;
  return worker.handlers['sample-usage-server'](
    { server_id: pool.id },
    { job: {} as never, log: worker.deps.logger },
  );
}

const state = async (instanceId: string) =>
  (await f.api('GET', `/api/database/admin/allocations/${instanceId}/usage`, undefined, f.adminToken)).body;

async function notices(instanceId: string): Promise<string[]> {
  const jobs = await f.queues.queue('callbacks').getJobs(['waiting', 'delayed', 'active', 'completed']);
  return jobs
    .filter((j) => j.name === 'deliver-tenant-event' && j.data.instance_id === instanceId)
    .sort((a, b) => a.timestamp - b.timestamp)
    .map((j) => j.data.event);
}

async function allocate(planTier: string) {
  const ids = newIds(planTier);
  const res = await f.allocateUntilReady(ids);
  return { ids, creds: res.body as Creds };
}

describe('the quota ladder', () => {
  it('warns, restricts for real, and lifts once the tenant is back under the lower threshold', async () => {
    const { ids, creds } = await allocate('tiny');
    const c = await tenant(creds);
    await c.query('CREATE TABLE t (id int, pad text)');
    await sample();
    expect((await state(ids.instance_id)).quota_state).toBe('ok');

    await grow(c, 16);
    await sample();
    const warned = await state(ids.instance_id);
    expect(warned).toMatchObject({ quota_state: 'warned', access_pending: false });
    expect(warned.size_bytes).toBeGreaterThan(20 * 1024 * 1024);
    expect(await outcome(c, 'INSERT INTO t VALUES (0, NULL)')).toBe('ok'); // warned still writes

    await grow(c, 22);
    await sample();
    const restricted = await state(ids.instance_id);
    expect(restricted).toMatchObject({ quota_state: 'restricted', access_pending: false });
    expect(await outcome(c, 'SELECT 1')).not.toBe('ok'); // its session was ended
    await c.end().catch(() => {});

    const r = await tenant(creds);
    try {
      expect(await outcome(r, `INSERT INTO t VALUES (1, 'x')`)).toBe('42501');
      expect(await outcome(r, `UPDATE t SET pad = 'y' WHERE id = 1`)).toBe('42501');
      expect(await outcome(r, 'CREATE TABLE more (id int)')).toBe('42501');
      await r.query('SET default_transaction_read_only = off');
      await r.query('RESET ROLE');
      await outcome(r, `GRANT INSERT ON t TO ${creds.db_user}`); // grants nothing: no grant option
      expect(await outcome(r, `INSERT INTO t VALUES (1, 'x')`)).toBe('42501');
      expect(await outcome(r, 'CREATE TABLE more (id int)')).toBe('42501');
      expect((await r.query('SELECT count(*)::int AS n FROM t')).rows[0].n).toBeGreaterThan(1000);
      expect(await outcome(r, 'DELETE FROM t WHERE id < 100')).toBe('ok');
      expect(await outcome(r, 'TRUNCATE t')).toBe('ok');
    } finally {
      await r.end();
    }
    await sample();
    expect((await state(ids.instance_id)).quota_state).toBe('ok');
    const w = await tenant(creds);
    try {
      expect(await outcome(w, `INSERT INTO t VALUES (2, 'back')`)).toBe('ok');
      expect(await outcome(w, 'CREATE TABLE more (id int)')).toBe('ok');
    } finally {
      await w.end();
    }

    // one audit event and one callback notice per transition
    const audit = await f.db
      .selectFrom('audit_events')
      .select('action')
      .where('instance_id', '=', ids.instance_id)
      .where('action', 'like', 'tenant.quota_%')
      .orderBy('occurred_at')
      .execute();
    expect(audit.map((a) => a.action)).toEqual([
      'tenant.quota_warned',
      'tenant.quota_restricted',
      'tenant.quota_ok',
    ]);
    expect(await notices(ids.instance_id)).toEqual([
      'database.quota_warned',
      'database.quota_restricted',
      'database.quota_ok',
    ]);

    const metrics = (await f.workers[0]!.app.inject({ url: '/metrics' })).body;
    expect(metrics).toMatch(/^tenantdb_tenants_by_quota_state\{state="ok"[^}]*\} [1-9]/m);
    expect(metrics).toMatch(/^tenantdb_tenants_by_quota_state\{state="restricted"[^}]*\} 0/m);
    expect(metrics).toMatch(/^tenantdb_storage_used_bytes\{type="shared"[^}]*\} [1-9]/m);
    expect(metrics).toMatch(/^tenantdb_usage_sample_lag_seconds\{[^}]*\} [0-9]/m);

    const server = await f.api('GET', `/api/database/admin/pools/${pool.id}/usage`, undefined, f.adminToken);
    expect(server.status).toBe(200);
    expect(server.body.sampled_tenants).toBeGreaterThanOrEqual(1);
    expect(server.body.largest.map((l: { instance_id: string }) => l.instance_id)).toContain(ids.instance_id);
  }, 120_000);

  it('a plan upgrade lifts a restricted tenant at once and raises its connection limit; a placement change is 409', async () => {
    const { ids, creds } = await allocate('tiny');
    const c = await tenant(creds);
    await c.query('CREATE TABLE t (id int, pad text)');
    await grow(c, 40);
    await c.end();
    await sample();
    await sample();
    expect((await state(ids.instance_id)).quota_state).toBe('restricted');

    const dedicated = await f.api(
      'POST',
      `/api/database/admin/allocations/${ids.instance_id}/plan`,
      { plan_tier: 'premium' },
      f.adminToken,
    );
    expect(dedicated.status).toBe(409);
    expect(dedicated.body.message).toContain('move');

    const upgraded = await f.api(
      'POST',
      `/api/database/admin/allocations/${ids.instance_id}/plan`,
      { plan_tier: 'roomy' },
      f.adminToken,
    );
    expect(upgraded.status, JSON.stringify(upgraded.body)).toBe(200);
    expect(upgraded.body).toMatchObject({ plan_tier: 'roomy', quota_state: 'ok', access_pending: false });
    const w = await tenant(creds);
    try {
      expect(await outcome(w, `INSERT INTO t VALUES (1, 'x')`)).toBe('ok');
      const limit = await w.query('SELECT rolconnlimit FROM pg_roles WHERE rolname = session_user');
      expect(limit.rows[0].rolconnlimit).toBe(9);
    } finally {
      await w.end();
    }
    expect((await f.api('DELETE', `/api/database/allocations/${ids.instance_id}`)).status).toBe(200);
  }, 120_000);
});

describe('a plan changed by an admin', () => {
  it('reaches its live tenants: connection limit and guardrails on the server, the row too', async () => {
    const { ids, creds } = await allocate('tiny');
    const patched = await f.api(
      'PATCH',
      '/api/database/admin/plans/tiny',
      { connection_limit: 6, temp_file_limit_mb: 8, statement_timeout_ms: 45_000 },
      f.adminToken,
    );
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    const worker = f.workers[0]!;
    // the PATCH queued apply-plan; run it here too (idempotent) rather than wait for the consumer
    await worker.handlers['apply-plan']({ plan_tier: 'tiny' }, { job: {} as never, log: worker.deps.logger });
    const c = await tenant(creds);
    try {
      expect((await c.query('SHOW temp_file_limit')).rows[0].temp_file_limit).toBe('8MB');
      expect((await c.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('45s');
      const limit = await c.query('SELECT rolconnlimit FROM pg_roles WHERE rolname = session_user');
      expect(limit.rows[0].rolconnlimit).toBe(6);
    } finally {
      await c.end();
    }
    const row = await f.db
      .selectFrom('tenant_databases')
      .select('connection_limit')
      .where('instance_id', '=', ids.instance_id)
      .executeTakeFirstOrThrow();
    expect(row.connection_limit).toBe(6);
  }, 60_000);
});

describe('suspension', () => {
  it('ends open sessions and refuses logins; resume lets the same password in with the data intact; release still works', async () => {
    const { ids, creds } = await allocate('standard');
    const c = await tenant(creds);
    await c.query('CREATE TABLE keep (v text)');
    await c.query(`INSERT INTO keep VALUES ('kept')`);

    const suspended = await f.api(
      'POST',
      `/api/database/admin/allocations/${ids.instance_id}/suspend`,
      {},
      f.adminToken,
    );
    expect(suspended.status, JSON.stringify(suspended.body)).toBe(200);
    expect(suspended.body).toMatchObject({ suspended: true, access_pending: false });
    expect(await outcome(c, 'SELECT 1')).not.toBe('ok');
    await c.end().catch(() => {});
    expect(await canLogin(creds)).toBe(false);
    // a rotation would set LOGIN again: refused while suspended
    expect(
      (await f.api('POST', `/api/database/allocations/${ids.instance_id}/rotate-credentials`)).status,
    ).toBe(409);
    // a repeat is harmless
    expect(
      (await f.api('POST', `/api/database/admin/allocations/${ids.instance_id}/suspend`, {}, f.adminToken))
        .status,
    ).toBe(200);
    expect(
      (await f.api('POST', `/api/database/admin/allocations/${ids.instance_id}/suspend`, {}, f.allocateToken))
        .status,
    ).toBe(403);

    const resumed = await f.api(
      'POST',
      `/api/database/admin/allocations/${ids.instance_id}/resume`,
      {},
      f.adminToken,
    );
    expect(resumed.body).toMatchObject({ suspended: false });
    const back = await tenant(creds);
    try {
      expect((await back.query('SELECT v FROM keep')).rows).toEqual([{ v: 'kept' }]);
    } finally {
      await back.end();
    }
    expect(await notices(ids.instance_id)).toEqual(['database.suspended', 'database.resumed']);

    await f.api('POST', `/api/database/admin/allocations/${ids.instance_id}/suspend`, {}, f.adminToken);
    expect((await f.api('DELETE', `/api/database/allocations/${ids.instance_id}`)).status).toBe(200);
    expect(
      (
        await f.api(
          'GET',
          `/api/database/admin/allocations/${ids.instance_id}/usage`,
          undefined,
          f.adminToken,
        )
      ).status,
    ).toBe(404);
  }, 120_000);

  it('answers 404 for an unknown allocation and 400 for a malformed id, changing nothing', async () => {
    const unknown = crypto.randomUUID();
    expect(
      (await f.api('POST', `/api/database/admin/allocations/${unknown}/suspend`, {}, f.adminToken)).status,
    ).toBe(404);
    expect(
      (await f.api('POST', '/api/database/admin/allocations/not-a-uuid/suspend', {}, f.adminToken)).status,
    ).toBe(400);
    const bad = await f.api(
      'POST',
      `/api/database/admin/allocations/${unknown}/plan`,
      { plan_tier: 'X!' },
      f.adminToken,
    );
    expect(bad.status).toBe(400);
  });
});

describe('the events to the portal (outbox)', () => {
  it('a transition whose process dies before its event is queued: the reconciler queues it, once', async () => {
    const { ids } = await allocate('tiny');
    const d = f.workers[0]!.deps;
    const row = await f.db
      .selectFrom('tenant_databases')
      .select('id')
      .where('instance_id', '=', ids.instance_id)
      .where('status', '=', 'ready')
      .executeTakeFirstOrThrow();
    // The catalog's transition commits; the process "dies" before the queue has the event.
    const dying = quotaTransitions(
      {
        servers: d.servers,
        usage: d.usage,
        events: d.tenantEvents,
        access: d.tenantAccess,
        notify: async () => {
          throw new Error('killed before the queue');
        },
      },
      { actor: 'test' },
    );
    const ladder = (await d.usage.findLadderRow(row.id))!;
    expect((await applyQuotaTransition(dying, ladder, 'warned')).moved).toBe(true);
    expect((await state(ids.instance_id)).quota_state).toBe('warned');
    expect(await notices(ids.instance_id)).toEqual([]);

    const pass = { log: d.logger, errors: 0 };
    const now = { ...d, config: { ...d.config, TENANTDB_ACCESS_REPAIR_AFTER_MS: 0 } };
    expect(await pendingEvents(now, pass)).toBe(1);
    expect(await notices(ids.instance_id)).toEqual(['database.quota_warned']);
    // Queued once: the next pass finds nothing left.
    expect(await pendingEvents(now, pass)).toBe(0);
    expect(await notices(ids.instance_id)).toEqual(['database.quota_warned']);
    expect(pass.errors).toBe(0);
  });
});

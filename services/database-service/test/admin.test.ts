// The admin API on a fleet that starts empty: stats, register, list, detail, real health checks
// through an outage and back, provisioning through the worker queue, conflicts; and the probes,
// metrics and the OpenAPI document every process serves.
import { CATALOG_SCHEMA } from '@tenantdb/catalog';
import { generatePassword } from '@tenantdb/secrets';
import { type RunningPostgres, startPostgres } from '@tenantdb/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { canLogin, type Harness, newIds, onServer, startHarness } from './harness';

let h: Harness;
/** A second Postgres server, not registered until the conflict tests are done with it. */
let spare: RunningPostgres;

beforeAll(async () => {
  h = await startHarness();
  const password = generatePassword();
  h.remember(password);
  spare = await startPostgres({ password, settings: { fsync: 'off' } });
});
afterAll(async () => {
  await spare?.destroy();
  await h?.close();
});

type Method = 'GET' | 'POST' | 'DELETE';
const admin = (method: Method, url: string, body?: unknown) => h.api(method, url, body, h.adminToken);
const allocate = (body: object) => h.api('POST', '/api/database/allocate', body);
const pool = () => h.servers[0]!;
const serverCount = async () =>
  Number(
    (
      await h.db
        .selectFrom('db_servers')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );
const auditCount = async () =>
  Number(
    (
      await h.db
        .selectFrom('audit_events')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );

/** Every key in a JSON value, at any depth. */
function keysDeep(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(keysDeep);
  if (value && typeof value === 'object')
    return Object.entries(value).flatMap(([k, v]) => [k, ...keysDeep(v)]);
  return [];
}

/** No admin password (plaintext or encrypted) anywhere in a response. */
function expectNoAdminSecret(body: unknown) {
  const text = JSON.stringify(body);
  for (const server of [...h.servers, spare]) expect(text).not.toContain(server.password);
  expect(keysDeep(body).filter((k) => /password|secret|_enc$/i.test(k))).toEqual([]);
}

function expectErrorShape(res: Awaited<ReturnType<Harness['api']>>, status: number) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(Object.keys(res.body).sort()).toEqual(['error', 'message', 'requestId', 'statusCode']);
  expect(res.body.statusCode).toBe(status);
  expect(res.body.requestId).toBe(res.headers['x-request-id']);
}

/** The value of one sample in Prometheus text, matched by name and (a subset of) its labels. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe('an empty fleet', () => {
  it('answers zeros from stats and an empty list, not an error', async () => {
    const stats = await admin('GET', '/api/database/admin/stats');
    expect(stats.status).toBe(200);
    expect(stats.body).toEqual({
      total_pools: 0,
      active_pools: 0,
      total_capacity: 0,
      total_used: 0,
      overall_utilization: 0,
      by_status: {},
      by_type: {},
    });
    const list = await admin('GET', '/api/database/admin/pools');
    expect(list.status).toBe(200);
    expect(list.body).toEqual({ pools: [], total_count: 0 });
  });
});

describe('one registered pool', () => {
  let first: { instance_id: string; customer_id: string; plan_tier: string };
  let allocated: Parameters<typeof canLogin>[0] & { db_server_id: string };

  it('lists a registered pool with filters and no secret', async () => {
    await h.addPoolServer(10, 'pool-1');
    const row = await h.db
      .selectFrom('db_servers')
      .select(['admin_password_enc'])
      .where('id', '=', pool().id)
      .executeTakeFirstOrThrow();
    // stored encrypted, never as the password itself
    expect(row.admin_password_enc).toBeTruthy();
    expect(row.admin_password_enc).not.toContain(pool().password);

    const list = await admin('GET', '/api/database/admin/pools');
    expect(list.status).toBe(200);
    expect(list.body.total_count).toBe(1);
    expect(list.body.pools).toHaveLength(1);
    expect(list.body.pools[0]).toMatchObject({
      id: pool().id,
      name: 'pool-1',
      driver: 'external',
      host: pool().host,
      port: pool().port,
      server_type: 'shared',
      allocation_strategy: 'auto',
      priority: 100,
      status: 'active',
      health_status: 'healthy',
      health_failures: 0,
      max_instances: 10,
      current_instances: 0,
      capacity_percentage: 0,
    });
    expect(list.body.pools[0].postgres_version).toMatch(/^\d+\.\d+/);
    expectNoAdminSecret(list.body);

    const count = async (query: string) => {
      const res = await admin('GET', `/api/database/admin/pools?${query}`);
      expect(res.status, query).toBe(200);
      expect(res.body.pools.length, query).toBe(Math.min(res.body.total_count, 100));
      return res.body.total_count as number;
    };
    expect(await count('status=active')).toBe(1);
    expect(await count('status=error')).toBe(0);
    expect(await count('server_type=shared')).toBe(1);
    expect(await count('server_type=dedicated')).toBe(0);
    expect(await count('status=active&server_type=shared')).toBe(1);
    expect(await count('status=active&server_type=platform')).toBe(0);
  });

  it('details a pool: capacity, tenant databases by status, no admin password', async () => {
    first = newIds();
    const a = await allocate(first);
    expect(a.status).toBe(200);
    allocated = a.body;
    const second = newIds();
    expect((await allocate(second)).status).toBe(200);
    expect((await h.api('DELETE', `/api/database/allocations/${second.instance_id}`)).status).toBe(200);

    const detail = await admin('GET', `/api/database/admin/pools/${pool().id}`);
    expect(detail.status).toBe(200);
    expect(detail.body).toMatchObject({
      id: pool().id,
      name: 'pool-1',
      status: 'active',
      max_instances: 10,
      current_instances: 1,
      capacity_percentage: 10,
      admin_user: pool().user,
      placement: {},
      dedicated_to_instance_id: null,
      tenant_databases: { ready: 1, released: 1 },
    });
    expect(detail.body.last_allocated_at).not.toBeNull();
    expectNoAdminSecret(detail.body);
    expect(JSON.stringify(detail.body)).not.toContain(allocated.db_password);

    const stats = await admin('GET', '/api/database/admin/stats');
    expect(stats.body).toEqual({
      total_pools: 1,
      active_pools: 1,
      total_capacity: 10,
      total_used: 1,
      overall_utilization: 10,
      by_status: { active: 1 },
      by_type: { shared: 1 },
    });

    expectErrorShape(await admin('GET', `/api/database/admin/pools/${crypto.randomUUID()}`), 404);
  });

  it('runs a real health check: healthy, latency, databases on the server vs the catalog', async () => {
    const before = new Date();
    const res = await admin('POST', `/api/database/admin/pools/${pool().id}/health-check`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      db_server_id: pool().id,
      ok: true,
      error: null,
      health_status: 'healthy',
      health_failures: 0,
      status: 'active',
      databases_on_server: 1,
      databases_in_catalog: 1,
      drift: 0,
    });
    expect(res.body.latency_ms).toBeTypeOf('number');
    expect(res.body.latency_ms).toBeGreaterThanOrEqual(0);
    expect(res.body.latency_ms).toBeLessThan(10_000);
    expect(res.body.postgres_version).toMatch(/^\d+\.\d+/);
    expect(new Date(res.body.checked_at).getTime()).toBeGreaterThanOrEqual(before.getTime() - 1000);

    const detail = await admin('GET', `/api/database/admin/pools/${pool().id}`);
    expect(detail.body.last_health_check).toBe(res.body.checked_at);
    expect(detail.body.last_health_latency_ms).toBe(res.body.latency_ms);
    const audit = await h.db
      .selectFrom('audit_events')
      .select(['actor', 'details'])
      .where('action', '=', 'server.health_check')
      .where('db_server_id', '=', pool().id)
      .execute();
    expect(audit).toEqual([{ actor: 'admin', details: { ok: true } }]);

    // a tenant-looking database the catalog does not know about is drift
    await onServer(pool(), 'CREATE DATABASE tdb_orphan_from_test');
    try {
      const drifted = await admin('POST', `/api/database/admin/pools/${pool().id}/health-check`);
      expect(drifted.body).toMatchObject({
        ok: true,
        databases_on_server: 2,
        databases_in_catalog: 1,
        drift: 1,
      });
    } finally {
      await onServer(pool(), 'DROP DATABASE tdb_orphan_from_test');
    }
  });

  it('goes degraded, degraded, unhealthy + error while the server is down, and is not placed on', async () => {
    await pool().stop();
    const results = [];
    for (let i = 0; i < 3; i++) {
      const res = await admin('POST', `/api/database/admin/pools/${pool().id}/health-check`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body).toMatchObject({
        ok: false,
        latency_ms: null,
        databases_on_server: null,
        databases_in_catalog: 1,
        drift: null,
      });
      expect(res.body.error).toBeTypeOf('string');
      expectNoAdminSecret(res.body);
      results.push(pick(res.body, ['health_status', 'health_failures', 'status']));
    }
    expect(results).toEqual([
      { health_status: 'degraded', health_failures: 1, status: 'active' },
      { health_status: 'degraded', health_failures: 2, status: 'active' },
      { health_status: 'unhealthy', health_failures: 3, status: 'error' },
    ]);
    const detail = await admin('GET', `/api/database/admin/pools/${pool().id}`);
    expect(detail.body.status).toBe('error');
    expect(detail.body.status_reason).toMatch(/^health check failed 3 times/);
    expect((await admin('GET', '/api/database/admin/pools?status=error')).body.total_count).toBe(1);
    expect((await admin('GET', '/api/database/admin/stats')).body).toMatchObject({
      total_pools: 1,
      active_pools: 0,
      by_status: { error: 1 },
    });

    // the only pool is in error: allocate does not touch it and asks for more capacity
    const waiting = newIds();
    const res = await allocate(waiting);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    expect(res.body).toMatchObject({
      status: 'provisioning',
      retry_after: h.config.TENANTDB_RETRY_AFTER_SECONDS,
    });
    expect(res.headers['retry-after']).toBe(String(h.config.TENANTDB_RETRY_AFTER_SECONDS));
    expect(
      await h.db
        .selectFrom('tenant_databases')
        .select('id')
        .where('instance_id', '=', waiting.instance_id)
        .execute(),
    ).toEqual([]);
    const grow = await h.queues.queue('provisioning').getJob('grow-shared-capacity');
    expect(grow?.name).toBe('grow-shared-capacity');
    // the existing allocation is still answered from the catalog
    const repeat = await allocate(first);
    expect(repeat.status).toBe(200);
    expect(repeat.body.db_password).toBe(allocated.db_password);

    // recovery: the server is back, the next check makes it healthy and active again
    await pool().start();
    const back = await admin('POST', `/api/database/admin/pools/${pool().id}/health-check`);
    expect(back.status).toBe(200);
    expect(back.body).toMatchObject({
      ok: true,
      health_status: 'healthy',
      health_failures: 0,
      status: 'active',
      drift: 0,
    });
    const recovered = await admin('GET', `/api/database/admin/pools/${pool().id}`);
    expect(recovered.body).toMatchObject({ status: 'active', status_reason: null, health_status: 'healthy' });

    const placed = await allocate(waiting);
    expect(placed.status, JSON.stringify(placed.body)).toBe(200);
    expect(placed.body.db_server_id).toBe(pool().id);
    expect(await canLogin(placed.body)).toBe(true);
    expect(await canLogin(allocated)).toBe(true);
  });
});

describe('register conflicts and failures', () => {
  it('answers 422 for a wrong password and writes nothing', async () => {
    const [servers, audit] = [await serverCount(), await auditCount()];
    const wrong = `wrong-${generatePassword()}`;
    h.remember(wrong);
    const res = await admin('POST', '/api/database/admin/pools/register', {
      name: 'spare',
      host: spare.host,
      port: spare.port,
      admin_user: spare.user,
      admin_password: wrong,
      max_instances: 10,
    });
    expectErrorShape(res, 422);
    expect(res.body.message).toMatch(/cannot log in/);
    expect(res.body.message).not.toContain(wrong);
    expect(await h.db.selectFrom('db_servers').select('id').where('name', '=', 'spare').execute()).toEqual(
      [],
    );
    expect(await serverCount()).toBe(servers);
    expect(await auditCount()).toBe(audit);

    // nothing listening there at all
    const nowhere = await admin('POST', '/api/database/admin/pools/register', {
      name: 'nowhere',
      host: '127.0.0.1',
      port: 1,
      admin_user: 'postgres',
      admin_password: wrong,
      max_instances: 10,
    });
    expectErrorShape(nowhere, 422);
    expect(await serverCount()).toBe(servers);
  });

  it('answers 409 for a name or an address that is already registered', async () => {
    const [servers, audit] = [await serverCount(), await auditCount()];
    const good = {
      host: spare.host,
      port: spare.port,
      admin_user: spare.user,
      admin_password: spare.password,
      max_instances: 10,
    };
    const sameName = await admin('POST', '/api/database/admin/pools/register', { ...good, name: 'pool-1' });
    expectErrorShape(sameName, 409);
    expect(sameName.body.message).toContain('pool-1');

    const sameAddress = await admin('POST', '/api/database/admin/pools/register', {
      ...good,
      name: 'pool-1-again',
      host: pool().host,
      port: pool().port,
      admin_password: pool().password,
    });
    expectErrorShape(sameAddress, 409);
    expect(sameAddress.body.message).toContain(`${pool().host}:${pool().port}`);
    expectNoAdminSecret(sameAddress.body);
    expect(await serverCount()).toBe(servers);
    expect(await auditCount()).toBe(audit);

    // the right request for the spare server works, once
    const ok = await admin('POST', '/api/database/admin/pools/register', { ...good, name: 'pool-2' });
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    expect(ok.body.pool).toMatchObject({ name: 'pool-2', driver: 'external', status: 'active' });
    expectNoAdminSecret(ok.body);
    const again = await admin('POST', '/api/database/admin/pools/register', { ...good, name: 'pool-3' });
    expectErrorShape(again, 409);
    expect(await serverCount()).toBe(servers + 1);
  });
});

describe('provisioning a pool', () => {
  let created: { id: string; name: string };

  it('answers 202 provisioning and queues one provision-server job', async () => {
    const provisioning = h.queues.queue('provisioning');
    const res = await admin('POST', '/api/database/admin/pools', { max_instances: 5 });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    expect(res.body.status).toBe('provisioning');
    expect(res.body.pool).toMatchObject({
      status: 'provisioning',
      driver: h.config.TENANTDB_DEFAULT_DRIVER,
      server_type: 'shared',
      max_instances: 5,
      current_instances: 0,
      capacity_percentage: 0,
      host: null,
      port: null,
      health_status: 'unknown',
    });
    expect(res.body.pool.name).toMatch(/^pool-[0-9a-f]{10}$/);
    created = res.body.pool;

    const job = await provisioning.getJob(`provision-server-${created.id}`);
    expect(job?.name).toBe('provision-server');
    expect(job?.data).toEqual({ server_id: created.id });
    const queued = (await provisioning.getJobs(['waiting', 'delayed', 'prioritized', 'active'])).filter(
      (j) => j.name === 'provision-server',
    );
    expect(queued.map((j) => j.data.server_id)).toEqual([created.id]);

    const row = await h.db
      .selectFrom('db_servers')
      .select(['status', 'driver', 'max_instances'])
      .where('id', '=', created.id)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({
      status: 'provisioning',
      driver: h.config.TENANTDB_DEFAULT_DRIVER,
      max_instances: 5,
    });
    const audit = await h.db
      .selectFrom('audit_events')
      .select(['actor', 'action'])
      .where('db_server_id', '=', created.id)
      .execute();
    expect(audit).toEqual([{ actor: 'admin', action: 'server.create' }]);

    // a pool without an address yet cannot be health-checked
    expectErrorShape(await admin('POST', `/api/database/admin/pools/${created.id}/health-check`), 409);
  });

  it('answers 409 for a name that already exists and queues nothing', async () => {
    const provisioning = h.queues.queue('provisioning');
    const servers = await serverCount();
    const jobs = await provisioning.getJobCounts();
    for (const name of [created.name, 'pool-1', 'pool-2']) {
      const res = await admin('POST', '/api/database/admin/pools', { max_instances: 5, name });
      expectErrorShape(res, 409);
      expect(res.body.message).toContain(name);
    }
    expect(await serverCount()).toBe(servers);
    expect(await provisioning.getJobCounts()).toEqual(jobs);
  });

  it('lists three pools with filters, pagination and total_count', async () => {
    const all = await admin('GET', '/api/database/admin/pools');
    expect(all.body.total_count).toBe(3);
    const ids = all.body.pools.map((p: { id: string }) => p.id);
    const pool2 = await h.db
      .selectFrom('db_servers')
      .select('id')
      .where('name', '=', 'pool-2')
      .executeTakeFirstOrThrow();
    expect([...ids].sort()).toEqual([pool().id, pool2.id, created.id].sort());

    const pages = [];
    for (let offset = 0; offset < 4; offset++) {
      const page = await admin('GET', `/api/database/admin/pools?limit=1&offset=${offset}`);
      expect(page.status).toBe(200);
      expect(page.body.total_count).toBe(3);
      pages.push(...page.body.pools.map((p: { id: string }) => p.id));
    }
    expect(pages).toEqual(ids); // the same order, page by page, and nothing past the end
    const tail = await admin('GET', '/api/database/admin/pools?limit=2&offset=2');
    expect(tail.body).toMatchObject({ total_count: 3 });
    expect(tail.body.pools.map((p: { id: string }) => p.id)).toEqual(ids.slice(2));

    const totals = async (query: string) =>
      (await admin('GET', `/api/database/admin/pools?${query}`)).body.total_count as number;
    expect(await totals('status=active')).toBe(2);
    expect(await totals('status=provisioning')).toBe(1);
    expect(await totals('server_type=shared')).toBe(3);
    expect(await totals('server_type=shared&status=provisioning&limit=1')).toBe(1);
    expect(await totals('server_type=dedicated')).toBe(0);
    expectErrorShape(await admin('GET', '/api/database/admin/pools?limit=0'), 400);
    expectErrorShape(await admin('GET', '/api/database/admin/pools?limit=501'), 400);
    expectErrorShape(await admin('GET', '/api/database/admin/pools?offset=-1'), 400);

    const active = (await admin('GET', '/api/database/admin/pools?status=active')).body.pools;
    expect(active.map((p: { name: string }) => p.name).sort()).toEqual(['pool-1', 'pool-2']);
    // pool-1 holds two tenants (first + the one placed after recovery)
    expect(active.find((p: { name: string }) => p.name === 'pool-1')).toMatchObject({
      current_instances: 2,
      capacity_percentage: 20,
    });

    expect((await admin('GET', '/api/database/admin/stats')).body).toEqual({
      total_pools: 3,
      active_pools: 2,
      total_capacity: 25,
      total_used: 2,
      overall_utilization: 8,
      by_status: { active: 2, provisioning: 1 },
      by_type: { shared: 3 },
    });
  });
});

describe('probes, metrics and the API document', () => {
  it('answers /healthz and /readyz without a token', async () => {
    const healthz = await h.api('GET', '/healthz', undefined, null);
    expect(healthz.status).toBe(200);
    expect(healthz.body).toEqual({ status: 'ok' });
    const readyz = await h.api('GET', '/readyz', undefined, null);
    expect(readyz.status).toBe(200);
    expect(readyz.body).toEqual({ status: 'ready', checks: { catalog: 'ok', redis: 'ok' } });
  });

  const scrape = async () => {
    const res = await h.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    return res.body;
  };

  it('exposes Prometheus metrics for allocations, requests and servers', async () => {
    const text = await scrape();
    expect(text).toContain('# TYPE tenantdb_allocations_total counter');
    expect(text).toContain('# TYPE http_request_duration_seconds histogram');
    expect(text).toContain('# TYPE tenantdb_servers gauge');
    // allocated: first, second, the repeat of first during the outage, the one placed after
    // recovery; provisioning: that one while the only pool was in error
    expect(sample(text, 'tenantdb_allocations_total', { result: 'allocated' })).toBe(4);
    expect(sample(text, 'tenantdb_allocations_total', { result: 'provisioning' })).toBe(1);
    expect(sample(text, 'tenantdb_servers', { status: 'active', health: 'healthy' })).toBe(2);
    expect(sample(text, 'tenantdb_servers', { status: 'provisioning', health: 'unknown' })).toBe(1);
    expect(sample(text, 'tenantdb_server_capacity', { server: 'pool-1', type: 'shared' })).toBe(10);
    expect(sample(text, 'tenantdb_server_used', { server: 'pool-1', type: 'shared' })).toBe(2);
    const allocateCount = sample(text, 'http_request_duration_seconds_count', {
      method: 'POST',
      route: '/api/database/allocate',
      status_code: '200',
    });
    expect(allocateCount).toBe(4);
    expect(text).not.toContain(h.adminToken);
    expect(text).not.toContain(pool().password);
  });

  // The three fleet gauges share one catalog read per scrape (prom-client collects concurrently).
  it('shows a change in server usage on the next scrape', async () => {
    await scrape();
    const ids = newIds();
    expect((await allocate(ids)).status).toBe(200);
    try {
      expect(sample(await scrape(), 'tenantdb_server_used', { server: 'pool-1', type: 'shared' })).toBe(3);
    } finally {
      expect((await h.api('DELETE', `/api/database/allocations/${ids.instance_id}`)).status).toBe(200);
    }
  });

  it('documents every /api/database route of the design with bearer security', async () => {
    const res = await h.api('GET', '/openapi.json', undefined, null);
    expect(res.status).toBe(200);
    const doc = res.body;
    expect(doc.openapi).toMatch(/^3\./);
    expect(doc.components.securitySchemes.bearer).toEqual({ type: 'http', scheme: 'bearer' });
    const expected: Record<string, string[]> = {
      '/api/database/allocate': ['post'],
      '/api/database/provision-dedicated': ['post'],
      '/api/database/allocations/{instance_id}': ['get', 'delete'],
      '/api/database/allocations/{instance_id}/rotate-credentials': ['post'],
      '/api/database/allocations/{instance_id}/credentials': ['get'],
      '/api/database/admin/pools': ['get', 'post'],
      '/api/database/admin/pools/{id}': ['get'],
      '/api/database/admin/pools/register': ['post'],
      '/api/database/admin/pools/{id}/health-check': ['post'],
      '/api/database/admin/stats': ['get'],
    };
    for (const [path, methods] of Object.entries(expected)) {
      expect(Object.keys(doc.paths), path).toContain(path);
      for (const method of methods) {
        const op = doc.paths[path][method];
        expect(op, `${method} ${path}`).toBeDefined();
        expect(op.security, `${method} ${path}`).toEqual([{ bearer: [] }]);
        expect(Object.keys(op.responses), `${method} ${path}`).toEqual(
          expect.arrayContaining(['400', '401', '403']),
        );
      }
    }
    // every documented /api route is secured; the probes are not in the API document
    for (const [path, methods] of Object.entries(
      doc.paths as Record<string, Record<string, { security?: unknown }>>,
    )) {
      if (!path.startsWith('/api/')) continue;
      for (const [method, op] of Object.entries(methods))
        expect(op.security, `${method} ${path}`).toEqual([{ bearer: [] }]);
    }
    for (const hidden of ['/healthz', '/readyz', '/metrics', '/openapi.json'])
      expect(doc.paths[hidden]).toBeUndefined();
    // path parameters are declared as UUIDs
    const param = doc.paths['/api/database/admin/pools/{id}'].get.parameters[0];
    expect(param).toMatchObject({ in: 'path', name: 'id', required: true });
    expect(param.schema.format).toBe('uuid');
  });

  it('serves the API UI at /docs', async () => {
    let res = await h.app.inject({ method: 'GET', url: '/docs' });
    for (let hops = 0; hops < 3 && res.statusCode >= 300 && res.statusCode < 400; hops++) {
      const location = String(res.headers.location);
      res = await h.app.inject({ method: 'GET', url: new URL(location, 'http://localhost/docs/').pathname });
    }
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.body).toMatch(/swagger-ui/i);
  });
});

describe('GET /admin/stats under concurrent requests', () => {
  // Requests that come while the aggregate runs share it; the next request after it reads again.
  it('answers requests that come during one read from that read, and a later request from a new one', async () => {
    const connect = async () => {
      const c = new pg.Client({ connectionString: h.config.DATABASE_URL });
      await c.connect();
      return c;
    };
    const [locker, observer] = await Promise.all([connect(), connect()]);
    try {
      const before = (await admin('GET', '/api/database/admin/stats')).body;
      // Hold the read behind a lock, so that every request below comes while it is in flight.
      await locker.query(`BEGIN; LOCK TABLE ${CATALOG_SCHEMA}.db_servers IN ACCESS EXCLUSIVE MODE`);
      const waitingReads = async () =>
        (
          await observer.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'
                AND query LIKE 'select "status", "server_type"%'`,
          )
        ).rows[0]!.n;
      const first = admin('GET', '/api/database/admin/stats');
      await vi.waitFor(async () => expect(await waitingReads()).toBe(1));
      const more = Array.from({ length: 4 }, () => admin('GET', '/api/database/admin/stats'));
      // Were they not sharing it, each would queue a read of its own behind the lock within this
      // second (the catalog pool has room for all five).
      let most = 0;
      for (const end = Date.now() + 1_000; Date.now() < end; await new Promise((r) => setTimeout(r, 50)))
        most = Math.max(most, await waitingReads());
      expect(most).toBe(1);
      await locker.query('COMMIT');
      for (const res of await Promise.all([first, ...more])) {
        expect(res.status).toBe(200);
        expect(res.body).toEqual(before);
      }

      const ids = newIds();
      expect((await allocate(ids)).status).toBe(200);
      try {
        expect((await admin('GET', '/api/database/admin/stats')).body.total_used).toBe(before.total_used + 1);
      } finally {
        expect((await h.api('DELETE', `/api/database/allocations/${ids.instance_id}`)).status).toBe(200);
      }
    } finally {
      await locker.query('ROLLBACK').catch(() => {});
      await Promise.all([locker.end(), observer.end()]);
    }
  });
});

function pick<T extends Record<string, unknown>, K extends keyof T>(obj: T, keys: K[]): Pick<T, K> {
  return Object.fromEntries(keys.map((k) => [k, obj[k]])) as Pick<T, K>;
}

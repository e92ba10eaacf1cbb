// The signup flow through instance-service's API, in process, against a real database-service
// (listening on a loopback port), a real pool server and real Redis: create → ready → credentials
// (audited) → delete; idempotency keys; paginated lists; metrics.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canLogin, type Harness, newInstance, startHarness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ pools: [20] });
});
afterAll(async () => {
  await h?.close();
});

async function onPool<T extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: h.servers[0]!.url() });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

async function auditActions(instanceId: string): Promise<string[]> {
  const rows = await h.deps.db
    .selectFrom('audit_events')
    .select('action')
    .where('instance_id', '=', instanceId)
    .orderBy('id')
    .execute();
  return rows.map((r) => r.action);
}

/** Attempts instance-service made to database-service so far, by operation (its request histogram). */
async function databaseServiceCalls(): Promise<Record<string, number>> {
  const metric = await h.deps.registry
    .getSingleMetric('tenantdb_database_service_request_duration_seconds')
    ?.get();
  const calls: Record<string, number> = {};
  for (const v of metric?.values ?? []) {
    if (!(v as { metricName?: string }).metricName?.endsWith('_count')) continue;
    const operation = String(v.labels.operation);
    calls[operation] = (calls[operation] ?? 0) + v.value;
  }
  return calls;
}

/** The operations whose count changed between two readings, and by how much. */
function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(
    Object.entries(after)
      .map(([op, n]) => [op, n - (before[op] ?? 0)] as const)
      .filter(([, n]) => n !== 0),
  );
}

describe('create, read, credentials', () => {
  it('202 pending, then ready with its database; the password only through credentials, and audited', async () => {
    const body = newInstance();
    const created = await h.api('POST', '/api/v1/instances', { body });
    expect(created.status).toBe(202);
    expect(created.body).toMatchObject({ ...body, status: 'pending', db_name: null, error: null });
    expect(created.headers.location).toBe(
      `/api/v1/instances/${created.body.id}?customer_id=${body.customer_id}`,
    );

    const ready = await h.waitForStatus(created.body.id, body.customer_id, ['ready']);
    expect(ready).toMatchObject({
      db_host: '127.0.0.1',
      db_port: h.servers[0]!.port,
      db_name: expect.stringMatching(/^tdb_/),
      db_user: expect.stringMatching(/^tdb_.*_u$/),
      ready_at: expect.any(String),
    });
    expect(JSON.stringify(ready)).not.toMatch(/password/);
    const row = await h.deps.repo.findById(created.body.id);
    expect(row?.tenant_database_id).toEqual(expect.any(String));
    expect(row?.db_server_id).toBe(h.servers[0]!.id);

    const creds = await h.api(
      'POST',
      `/api/v1/instances/${created.body.id}/credentials?customer_id=${body.customer_id}`,
    );
    expect(creds.status).toBe(200);
    expect(creds.headers['cache-control']).toBe('no-store');
    expect(creds.body).toMatchObject({
      instance_id: created.body.id,
      db_name: ready.db_name,
      db_user: ready.db_user,
      db_password: expect.any(String),
    });
    expect(creds.body.db_password.length).toBeGreaterThanOrEqual(32);
    expect(await canLogin(creds.body)).toBe(true);
    // Asking again answers the same password (allocate is idempotent); every read is audited.
    const again = await h.api(
      'POST',
      `/api/v1/instances/${created.body.id}/credentials?customer_id=${body.customer_id}`,
    );
    expect(again.body.db_password).toBe(creds.body.db_password);
    expect(await auditActions(created.body.id)).toEqual([
      'instance.create',
      'instance.credentials',
      'instance.credentials',
    ]);
    // instance-service stores no password: no column holds it.
    const stored = JSON.stringify(await h.deps.db.selectFrom('instances').selectAll().execute());
    expect(stored).not.toContain(creds.body.db_password);
  });

  it('a signup makes one call to database-service (allocate), a credentials read one read and no allocate', async () => {
    const body = newInstance();
    const before = await databaseServiceCalls();
    const created = await h.api('POST', '/api/v1/instances', { body });
    await h.waitForStatus(created.body.id, body.customer_id, ['ready']);
    const signup = await databaseServiceCalls();
    expect(delta(before, signup)).toEqual({ allocate: 1 });
    // tenant_database_id came with the allocate answer: the one GET /allocations/{id} reports.
    const allocation = await h.databaseService.inject({
      method: 'GET',
      url: `/api/database/allocations/${created.body.id}`,
      headers: { authorization: `Bearer ${h.allocateToken}` },
    });
    expect((await h.deps.repo.findById(created.body.id))?.tenant_database_id).toBe(
      allocation.json().tenant_database_id,
    );

    const creds = await h.api(
      'POST',
      `/api/v1/instances/${created.body.id}/credentials?customer_id=${body.customer_id}`,
    );
    expect(creds.status).toBe(200);
    expect(await canLogin(creds.body)).toBe(true);
    expect(delta(signup, await databaseServiceCalls())).toEqual({ read_credentials: 1 });
    // database-service audited the read too, as the allocate token.
    const audited = await h.catalogDb
      .selectFrom('audit_events')
      .select('actor')
      .where('instance_id', '=', created.body.id)
      .where('action', '=', 'allocation.read_credentials')
      .execute();
    expect(audited).toEqual([{ actor: 'allocate' }]);
  });

  it('credentials of an instance that is not ready yet: 409, nothing audited', async () => {
    await h.stopConsumer();
    try {
      const body = newInstance();
      const created = await h.api('POST', '/api/v1/instances', { body });
      const res = await h.api(
        'POST',
        `/api/v1/instances/${created.body.id}/credentials?customer_id=${body.customer_id}`,
      );
      expect(res.status).toBe(409);
      expect(res.body.message).toMatch(/pending/);
      expect(await auditActions(created.body.id)).toEqual(['instance.create']);
    } finally {
      await h.startConsumer();
    }
  });
});

describe('Idempotency-Key', () => {
  it('the same key and body answer the same instance; another body is 422; concurrent repeats make one', async () => {
    const key = `signup-${crypto.randomUUID()}`;
    const body = newInstance();
    const first = await h.api('POST', '/api/v1/instances', { body, headers: { 'idempotency-key': key } });
    expect(first.status).toBe(202);
    const repeat = await h.api('POST', '/api/v1/instances', { body, headers: { 'idempotency-key': key } });
    expect(repeat.status).toBe(202);
    expect(repeat.body.id).toBe(first.body.id);
    expect(repeat.headers['idempotent-replayed']).toBe('true');

    for (const changed of [{ name: 'another name' }, { plan_tier: 'premium' }]) {
      const other = await h.api('POST', '/api/v1/instances', {
        body: { ...body, ...changed },
        headers: { 'idempotency-key': key },
      });
      expect(other.status).toBe(422);
      expect(other.body).toMatchObject({ statusCode: 422, error: 'Unprocessable Entity' });
      expect(other.body.message).toMatch(/Idempotency-Key/);
    }

    const raceKey = `race-${crypto.randomUUID()}`;
    const raceBody = newInstance();
    const answers = await Promise.all(
      Array.from({ length: 8 }, () =>
        h.api('POST', '/api/v1/instances', { body: raceBody, headers: { 'idempotency-key': raceKey } }),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(202));
    expect(new Set(answers.map((a) => a.body.id)).size).toBe(1);
    const rows = await h.deps.db
      .selectFrom('instances')
      .select('id')
      .where('customer_id', 'in', [body.customer_id, raceBody.customer_id])
      .execute();
    expect(rows).toHaveLength(2);
    await h.waitForStatus(answers[0]!.body.id, raceBody.customer_id, ['ready']);
  });

  it('is per customer: two customers using the same key get two instances, each its own on repeat', async () => {
    const key = `shared-${crypto.randomUUID()}`;
    const a = newInstance({ name: 'same name' });
    const b = newInstance({ name: 'same name' });
    const first = await h.api('POST', '/api/v1/instances', { body: a, headers: { 'idempotency-key': key } });
    const other = await h.api('POST', '/api/v1/instances', { body: b, headers: { 'idempotency-key': key } });
    expect([first.status, other.status]).toEqual([202, 202]);
    expect(other.body.id).not.toBe(first.body.id);
    expect(other.body.customer_id).toBe(b.customer_id);
    expect(other.headers['idempotent-replayed']).toBeUndefined();
    const againA = await h.api('POST', '/api/v1/instances', { body: a, headers: { 'idempotency-key': key } });
    const againB = await h.api('POST', '/api/v1/instances', { body: b, headers: { 'idempotency-key': key } });
    expect([againA.body.id, againB.body.id]).toEqual([first.body.id, other.body.id]);
    expect([againA.headers['idempotent-replayed'], againB.headers['idempotent-replayed']]).toEqual([
      'true',
      'true',
    ]);
    // Customer B's key never reveals customer A's instance (nor a 422 about its body).
    const bOther = await h.api('POST', '/api/v1/instances', {
      body: { ...b, name: 'changed' },
      headers: { 'idempotency-key': key },
    });
    expect(bOther.status).toBe(422);
  });

  it('without a key, two identical requests are two instances', async () => {
    const body = newInstance();
    const a = await h.api('POST', '/api/v1/instances', { body });
    const b = await h.api('POST', '/api/v1/instances', { body });
    expect(a.body.id).not.toBe(b.body.id);
  });
});

describe('lists', () => {
  it("a customer's instances, newest first, paginated; never another customer's", async () => {
    const customer = crypto.randomUUID();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await h.api('POST', '/api/v1/instances', {
        body: newInstance({ customer_id: customer, name: `n${i}` }),
      });
      ids.push(res.body.id);
    }
    await h.api('POST', '/api/v1/instances', { body: newInstance() }); // another customer
    const pages = [];
    for (const offset of [0, 2, 4]) {
      const res = await h.api('GET', `/api/v1/instances?customer_id=${customer}&limit=2&offset=${offset}`);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ total_count: 5, limit: 2, offset });
      pages.push(
        ...res.body.instances.map((i: { id: string; customer_id: string }) => {
          expect(i.customer_id).toBe(customer);
          return i.id;
        }),
      );
    }
    expect(pages).toEqual([...ids].reverse());
    const defaults = await h.api('GET', `/api/v1/instances?customer_id=${customer}`);
    expect(defaults.body).toMatchObject({ total_count: 5, limit: 50, offset: 0 });
    for (const id of ids) await h.waitForStatus(id, customer, ['ready']);
    const ready = await h.api('GET', `/api/v1/instances?customer_id=${customer}&status=ready`);
    expect(ready.body.total_count).toBe(5);
    const none = await h.api('GET', `/api/v1/instances?customer_id=${customer}&status=deleted`);
    expect(none.body).toMatchObject({ instances: [], total_count: 0 });
  });
});

describe('delete', () => {
  it('drops the database and role on the server, frees the slot, marks the instance deleted; repeats answer the same', async () => {
    const body = newInstance();
    const created = await h.api('POST', '/api/v1/instances', { body });
    const url = `/api/v1/instances/${created.body.id}?customer_id=${body.customer_id}`;
    const ready = await h.waitForStatus(created.body.id, body.customer_id, ['ready']);
    const creds = await h.api(
      'POST',
      `/api/v1/instances/${created.body.id}/credentials?customer_id=${body.customer_id}`,
    );
    expect(await canLogin(creds.body)).toBe(true);
    const slots = async () =>
      (await h.catalogDb.selectFrom('db_servers').select('current_instances').executeTakeFirstOrThrow())
        .current_instances;
    const before = await slots();

    const deleted = await h.api('DELETE', url);
    expect(deleted.status).toBe(200);
    expect(deleted.body).toMatchObject({
      id: created.body.id,
      status: 'deleted',
      deleted_at: expect.any(String),
    });
    expect(await slots()).toBe(before - 1);
    expect(await onPool('SELECT 1 FROM pg_database WHERE datname = $1', [ready.db_name])).toEqual([]);
    expect(await onPool('SELECT 1 FROM pg_roles WHERE rolname = $1', [ready.db_user])).toEqual([]);
    expect(await canLogin(creds.body)).toBe(false);
    const allocation = await h.databaseService.inject({
      method: 'GET',
      url: `/api/database/allocations/${created.body.id}`,
      headers: { authorization: `Bearer ${h.allocateToken}` },
    });
    expect(allocation.json().status).toBe('released');

    const repeat = await h.api('DELETE', url);
    expect(repeat.status).toBe(200);
    expect(repeat.body).toMatchObject({ status: 'deleted', deleted_at: deleted.body.deleted_at });
    expect(await slots()).toBe(before - 1);
    const get = await h.api('GET', url);
    expect(get.body.status).toBe('deleted');
    const creds2 = await h.api(
      'POST',
      `/api/v1/instances/${created.body.id}/credentials?customer_id=${body.customer_id}`,
    );
    expect(creds2.status).toBe(409);
    // database-service holds nothing for it afterwards either (the credentials read did not
    // allocate a new database for a deleted instance).
    const after = await h.databaseService.inject({
      method: 'GET',
      url: `/api/database/allocations/${created.body.id}`,
      headers: { authorization: `Bearer ${h.allocateToken}` },
    });
    expect(after.json().status).toBe('released');
    expect(await auditActions(created.body.id)).toEqual([
      'instance.create',
      'instance.credentials',
      'instance.delete',
    ]);
  });

  it('deleting an instance still waiting for its database: deleted, and nothing stays allocated', async () => {
    await h.stopConsumer();
    const body = newInstance();
    const created = await h.api('POST', '/api/v1/instances', { body });
    const deleted = await h.api(
      'DELETE',
      `/api/v1/instances/${created.body.id}?customer_id=${body.customer_id}`,
    );
    expect(deleted.status).toBe(200);
    expect(deleted.body.status).toBe('deleted');
    await h.startConsumer();
    // The queued wait-for-database runs now, finds the instance deleted and allocates nothing.
    const row = async () => h.deps.repo.findById(created.body.id);
    const deadline = Date.now() + 20_000;
    while ((await h.queuedJobs()).some((j) => j.id === `wait-for-database-${created.body.id}`)) {
      if (Date.now() > deadline) throw new Error('wait-for-database still queued');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await row())?.status).toBe('deleted');
    const allocation = await h.databaseService.inject({
      method: 'GET',
      url: `/api/database/allocations/${created.body.id}`,
      headers: { authorization: `Bearer ${h.allocateToken}` },
    });
    expect(allocation.statusCode).toBe(404);
  });
});

describe('metrics', () => {
  it('instances by status, wait-for-database outcomes and database-service requests, prefixed tenantdb_', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.body).toMatch(/tenantdb_instances\{status="ready",service="instance-service"\} \d+/);
    expect(res.body).toMatch(/tenantdb_instances\{status="deleted",service="instance-service"\} \d+/);
    expect(res.body).toMatch(
      /tenantdb_wait_for_database_total\{outcome="ready",service="instance-service"\} \d+/,
    );
    expect(res.body).toMatch(
      /tenantdb_database_service_request_duration_seconds_count\{service="instance-service",operation="allocate",outcome="ok"\} \d+/,
    );
    expect(res.body).toMatch(/http_request_duration_seconds_count\{[^}]*route="\/api\/v1\/instances"/);
    const health = await h.app.inject({ method: 'GET', url: '/healthz' });
    expect(health.json()).toEqual({ status: 'ok' });
    const ready = await h.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.json()).toEqual({ status: 'ready', checks: { catalog: 'ok', redis: 'ok' } });
    const openapi = (await h.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    expect(Object.keys(openapi.paths).sort()).toEqual([
      '/api/v1/instances',
      '/api/v1/instances/{id}',
      '/api/v1/instances/{id}/credentials',
      '/api/v1/instances/{id}/plan',
      '/api/v1/instances/{id}/resume',
      '/api/v1/instances/{id}/suspend',
    ]);
  });
});

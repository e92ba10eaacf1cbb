// The typed client's retry policy against a scripted HTTP server on a loopback port: network
// errors, timeouts and 5xx are retried with backoff; a 4xx never is; answers are checked against
// the contract. (The client against the real database-service is exercised by instance-service's
// tests.)
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createDatabaseServiceClient,
  DatabaseServiceError,
  DatabaseServiceProtocolError,
  DatabaseServiceUnreachableError,
} from './database-service.client';

type Step = (req: IncomingMessage, res: ServerResponse, body: string) => void;
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** A server that answers request n with steps[n] (the last step repeats). */
async function scripted(steps: Step[]) {
  const seen: { method: string; url: string; authorization: string | undefined; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, authorization: req.headers.authorization, body });
      steps[Math.min(seen.length - 1, steps.length - 1)]!(req, res, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise((r) => server.close(() => r())));
  closers.push(async () => server.closeAllConnections());
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

const json =
  (status: number, body: unknown, headers: Record<string, string> = {}): Step =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
const error = (status: number, message: string, headers: Record<string, string> = {}) =>
  json(status, { statusCode: status, error: 'x', message, requestId: 'r1' }, headers);

const ids = {
  instance_id: '6f1c1b9e-4a2b-4c51-9a51-0c9f1d2e3a41',
  customer_id: '0b5a6c7d-1e2f-4a3b-8c4d-5e6f7a8b9c0d',
  plan_tier: 'standard',
};
const allocated = {
  status: 'allocated',
  db_server_id: '9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a',
  db_host: '127.0.0.1',
  db_port: 5432,
  db_name: 'tdb_x',
  db_user: 'tdb_x_u',
  db_password: 'p'.repeat(40),
};
const client = (url: string, extra: Partial<Parameters<typeof createDatabaseServiceClient>[0]> = {}) =>
  createDatabaseServiceClient({
    baseUrl: url,
    token: 'tok',
    backoffMs: 10,
    retries: 2,
    timeoutMs: 2_000,
    ...extra,
  });

describe('database-service client', () => {
  it('sends the bearer token and the validated body, and parses 200 and 202 by the contract', async () => {
    const s = await scripted([
      json(200, allocated),
      json(202, { status: 'provisioning', message: 'm', retry_after: 5 }),
    ]);
    const c = client(s.url);
    expect(await c.allocate(ids)).toEqual(allocated);
    expect(await c.allocate(ids)).toEqual({ status: 'provisioning', message: 'm', retry_after: 5 });
    expect(s.seen[0]).toMatchObject({
      method: 'POST',
      url: '/api/database/allocate',
      authorization: 'Bearer tok',
    });
    expect(JSON.parse(s.seen[0]!.body)).toEqual(ids);
    await expect(c.allocate({ ...ids, instance_id: 'nope' })).rejects.toThrow();
    expect(s.seen).toHaveLength(2); // an invalid request is never sent
  });

  it('retries 5xx with backoff and returns the answer that follows', async () => {
    const s = await scripted([
      error(500, 'boom'),
      error(503, 'busy', { 'retry-after': '0' }),
      json(200, allocated),
    ]);
    const attempts: string[] = [];
    const c = client(s.url, { onAttempt: (a) => attempts.push(a.outcome) });
    expect(await c.allocate(ids)).toEqual(allocated);
    expect(s.seen).toHaveLength(3);
    expect(attempts).toEqual(['server_error', 'server_error', 'ok']);
  });

  it('gives up after the retries with the last 5xx, transient', async () => {
    const s = await scripted([error(503, 'catalog down', { 'retry-after': '0' })]);
    const err = await client(s.url)
      .release(ids.instance_id)
      .catch((e) => e);
    expect(err).toBeInstanceOf(DatabaseServiceError);
    expect(err).toMatchObject({ status: 503, transient: true, retryAfterSeconds: 0 });
    expect(err.body.message).toBe('catalog down');
    expect(s.seen).toHaveLength(3);
  });

  it('never retries a 4xx', async () => {
    for (const status of [400, 401, 403, 409, 422, 429]) {
      const s = await scripted([error(status, `no (${status})`), json(200, allocated)]);
      const err = await client(s.url)
        .allocate(ids)
        .catch((e) => e);
      expect(err).toBeInstanceOf(DatabaseServiceError);
      expect(err.status).toBe(status);
      expect(err.transient).toBe(status === 429);
      expect(s.seen).toHaveLength(1);
    }
  });

  it('404 on an allocation read is an answer (null), not an error', async () => {
    const s = await scripted([error(404, 'no allocation for this instance_id')]);
    expect(await client(s.url).getAllocation(ids.instance_id)).toBeNull();
    expect(s.seen).toEqual([
      expect.objectContaining({ method: 'GET', url: `/api/database/allocations/${ids.instance_id}` }),
    ]);
  });

  it('reads credentials with GET …/credentials, parsed by the contract; 404 and 409 are errors, never retried', async () => {
    const credentials = {
      instance_id: ids.instance_id,
      tenant_database_id: '3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a99',
      ...allocated,
    };
    const { status: _, ...body } = credentials;
    const s = await scripted([
      json(200, body),
      error(404, 'no live allocation for this instance_id'),
      error(409, 'the allocation is creating'),
      json(200, { ...body, db_password: undefined }),
    ]);
    const attempts: string[] = [];
    const c = client(s.url, { onAttempt: (a) => attempts.push(`${a.operation}:${a.outcome}`) });
    expect(await c.credentials(ids.instance_id)).toEqual(body);
    expect(s.seen[0]).toMatchObject({
      method: 'GET',
      url: `/api/database/allocations/${ids.instance_id}/credentials`,
      authorization: 'Bearer tok',
      body: '',
    });
    const missing = await c.credentials(ids.instance_id).catch((e) => e);
    expect(missing).toBeInstanceOf(DatabaseServiceError);
    expect(missing).toMatchObject({ operation: 'read_credentials', status: 404, transient: false });
    const busy = await c.credentials(ids.instance_id).catch((e) => e);
    expect(busy).toMatchObject({ status: 409, transient: false });
    expect(busy.body.message).toMatch(/creating/);
    await expect(c.credentials(ids.instance_id)).rejects.toBeInstanceOf(DatabaseServiceProtocolError);
    await expect(c.credentials('not-a-uuid')).rejects.toThrow();
    expect(s.seen).toHaveLength(4); // one attempt each; an invalid id is never sent
    expect(attempts).toEqual([
      'read_credentials:ok',
      'read_credentials:client_error',
      'read_credentials:client_error',
      'read_credentials:ok',
    ]);
  });

  it('parses tenant_database_id in the allocate answer, and an answer without it (an older service)', async () => {
    const withId = { ...allocated, tenant_database_id: '3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a99' };
    const s = await scripted([json(200, withId), json(200, allocated)]);
    const c = client(s.url);
    expect(await c.allocate(ids)).toEqual(withId);
    expect(await c.allocate(ids)).toEqual(allocated);
  });

  it('retries a refused connection and a timeout, then reports the service unreachable', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const { port } = probe.address() as AddressInfo;
    await new Promise((r) => probe.close(r));
    const closed = `http://127.0.0.1:${port}`;
    const refused = await client(closed)
      .allocate(ids)
      .catch((e) => e);
    expect(refused).toBeInstanceOf(DatabaseServiceUnreachableError);
    expect(refused.message).toMatch(/ECONNREFUSED/);

    const slow = await scripted([() => {}]); // never answers
    const started = Date.now();
    const timedOut = await client(slow.url, { timeoutMs: 200, retries: 1 })
      .allocate(ids)
      .catch((e) => e);
    expect(timedOut).toBeInstanceOf(DatabaseServiceUnreachableError);
    expect(timedOut.message).toMatch(/no answer within 200 ms/);
    expect(slow.seen).toHaveLength(2);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('an answer that does not match the contract is a protocol error, not retried', async () => {
    const s = await scripted([json(200, { status: 'allocated', db_host: 'h' })]);
    await expect(client(s.url).allocate(ids)).rejects.toBeInstanceOf(DatabaseServiceProtocolError);
    expect(s.seen).toHaveLength(1);
  });

  it('changePlan: admin token, 200 (applied) and 202 (moving) told apart by the contract, a 503 not retried', async () => {
    const usage = {
      instance_id: ids.instance_id,
      tenant_database_id: allocated.db_server_id,
      plan_tier: 'professional',
      size_bytes: null,
      active_connections: null,
      sampled_at: null,
      storage_quota_bytes: null,
      quota_state: 'ok',
      quota_state_at: null,
      suspended: false,
      suspended_at: null,
      access_pending: false,
    };
    const at = '2026-12-04T19:00:00.000Z';
    const move = {
      id: allocated.db_server_id,
      tenant_database_id: allocated.db_server_id,
      instance_id: ids.instance_id,
      source_server_id: ids.customer_id,
      target_server_id: allocated.db_server_id,
      phase: 'awaiting_target',
      method: null,
      method_reason: null,
      progress: {
        tables_total: null,
        tables_synced: null,
        bytes_total: null,
        bytes_copied: null,
        lag_bytes: null,
      },
      write_blocked_ms: null,
      cancel_requested: false,
      error: null,
      requested_by: 'admin',
      created_at: at,
      updated_at: at,
      cut_over_at: null,
      drop_source_after: null,
      finished_at: null,
      plan_tier: 'premium',
    };
    const s = await scripted([
      json(200, usage),
      json(202, { instance_id: ids.instance_id, from_plan_tier: 'standard', plan_tier: 'premium', move }),
      error(503, 'down'),
    ]);
    const c = client(s.url, { adminToken: 'adm' });
    expect(await c.changePlan(ids.instance_id, 'professional')).toMatchObject({
      kind: 'applied',
      usage: { plan_tier: 'professional' },
    });
    expect(await c.changePlan(ids.instance_id, 'premium')).toMatchObject({
      kind: 'moving',
      change: { plan_tier: 'premium', move: { phase: 'awaiting_target' } },
    });
    expect(s.seen[0]).toMatchObject({
      method: 'POST',
      url: `/api/database/admin/allocations/${ids.instance_id}/plan`,
      authorization: 'Bearer adm',
    });
    expect(JSON.parse(s.seen[1]!.body)).toEqual({ plan_tier: 'premium' });
    await expect(c.changePlan(ids.instance_id, 'premium')).rejects.toBeInstanceOf(DatabaseServiceError);
    expect(s.seen).toHaveLength(3);
  });
});

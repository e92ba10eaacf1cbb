// Rate limits that hold across replicas (counters in Redis) and count failed authentication per
// client address: a wrong-token flood is answered 429 after the budget, before any token is
// looked at, on every replica; the address is the TCP peer unless a trusted proxy says otherwise.
import { randomUUID } from 'node:crypto';
import { createLogger, createRegistry } from '@tenantdb/observability';
import { captureLogs } from '@tenantdb/testkit';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createHttpApp, type HttpApp, type HttpAppOptions } from './app-base';

const GOOD = 'a-valid-token-of-enough-length';
const apps: HttpApp[] = [];
afterAll(async () => {
  for (const app of apps) await app.close();
});

async function replica(opts: Partial<HttpAppOptions> & { namespace?: string; redisUrl?: string } = {}) {
  const { namespace, redisUrl, ...rest } = opts;
  // as the services make it: no offline queue (a command while Redis is away fails at once, and
  // is not counted), a short command deadline
  const redis = namespace
    ? new Redis(redisUrl ?? inject('redisUrl'), {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        commandTimeout: 500,
      }).on('error', () => {})
    : undefined;
  if (redis && !redisUrl) await new Promise((ready) => redis.once('ready', ready));
  const app = await createHttpApp({
    name: 'test',
    version: '0',
    description: 'test',
    logger: createLogger({ name: 'test', level: 'info' }, captureLogs().stream),
    registry: createRegistry('test'),
    tokens: [{ name: 'caller', token: GOOD, scopes: ['use'] }],
    rateLimitPerMinute: 1000,
    bodyLimitBytes: 1024,
    readiness: {},
    ...(redis && namespace ? { rateLimitStore: { redis, namespace } } : {}),
    ...rest,
  });
  app.get('/thing', { config: { scope: 'use' } }, async () => ({ ok: true }));
  app.get('/admin-thing', { config: { scope: 'admin' } }, async () => ({ ok: true }));
  apps.push(app);
  return app;
}

const call = (
  app: HttpApp,
  token: string | null,
  opts: { url?: string; from?: string; headers?: Record<string, string> } = {},
) =>
  app.inject({
    method: 'GET',
    url: opts.url ?? '/thing',
    remoteAddress: opts.from ?? '203.0.113.7',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...opts.headers },
  });

describe('per-token limit', () => {
  it('is one budget for all replicas sharing Redis', async () => {
    const namespace = `rl-${randomUUID()}:`;
    const [a, b] = [
      await replica({ namespace, rateLimitPerMinute: 5 }),
      await replica({ namespace, rateLimitPerMinute: 5 }),
    ];
    const codes = [];
    for (const app of [a, b, a, b, a]) codes.push((await call(app, GOOD)).statusCode);
    expect(codes).toEqual([200, 200, 200, 200, 200]);
    const sixth = await call(b, GOOD);
    expect(sixth.statusCode).toBe(429);
    expect(Number(sixth.headers['retry-after'])).toBeGreaterThan(0);
    expect(sixth.json()).toMatchObject({ statusCode: 429, requestId: expect.any(String) });
  });
});

describe('failed authentication', () => {
  it('answers 429 to an address over its budget of 401s and 403s, even with a good token, on every replica', async () => {
    const namespace = `af-${randomUUID()}:`;
    const [a, b] = [
      await replica({ namespace, authFailuresPerMinute: 3 }),
      await replica({ namespace, authFailuresPerMinute: 3 }),
    ];
    expect((await call(a, 'wrong-token-1')).statusCode).toBe(401);
    expect((await call(b, null)).statusCode).toBe(401);
    // a good token on a route it has no scope for is a failure too
    expect((await call(a, GOOD, { url: '/admin-thing' })).statusCode).toBe(403);
    for (const app of [a, b]) {
      const blocked = await call(app, GOOD);
      expect(blocked.statusCode).toBe(429);
      expect(blocked.json().message).toMatch(/failed authentications/);
      expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
      expect(Number(blocked.headers['retry-after'])).toBeLessThanOrEqual(60);
    }
    // another address is not affected; its good token passes, its failures are its own
    expect((await call(a, GOOD, { from: '198.51.100.9' })).statusCode).toBe(200);
    expect((await call(b, 'wrong', { from: '198.51.100.9' })).statusCode).toBe(401);
    // public routes stay open to the blocked address
    expect((await call(a, null, { url: '/healthz' })).statusCode).toBe(200);
  });

  it('believes X-Forwarded-For only from a trusted proxy', async () => {
    const namespace = `xf-${randomUUID()}:`;
    const direct = await replica({ namespace, authFailuresPerMinute: 2 });
    // without a trusted proxy, a forged header does not give a fresh budget
    for (let i = 0; i < 2; i++) {
      const res = await call(direct, 'wrong', { headers: { 'x-forwarded-for': `192.0.2.${i}` } });
      expect(res.statusCode).toBe(401);
    }
    expect((await call(direct, 'wrong', { headers: { 'x-forwarded-for': '192.0.2.99' } })).statusCode).toBe(
      429,
    );

    const behindProxy = await replica({
      namespace: `xf-${randomUUID()}:`,
      authFailuresPerMinute: 2,
      trustProxy: ['10.0.0.0/8'],
    });
    const viaProxy = (client: string, token: string) =>
      call(behindProxy, token, { from: '10.1.2.3', headers: { 'x-forwarded-for': client } });
    expect((await viaProxy('192.0.2.1', 'wrong')).statusCode).toBe(401);
    expect((await viaProxy('192.0.2.1', 'wrong')).statusCode).toBe(401);
    expect((await viaProxy('192.0.2.1', GOOD)).statusCode).toBe(429);
    // the proxy's other clients keep their own budgets
    expect((await viaProxy('192.0.2.2', GOOD)).statusCode).toBe(200);
  });

  it('fails open while Redis cannot answer: requests are served, not refused', async () => {
    const app = await replica({
      namespace: `down-${randomUUID()}:`,
      redisUrl: 'redis://127.0.0.1:1',
      authFailuresPerMinute: 1,
      rateLimitPerMinute: 1,
    });
    for (let i = 0; i < 3; i++) {
      expect((await call(app, GOOD)).statusCode).toBe(200);
      expect((await call(app, 'wrong')).statusCode).toBe(401);
    }
  });
});

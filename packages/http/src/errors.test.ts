// The one error handler: catalog outages and pool-acquire timeouts are a 503 with Retry-After in
// the error shape, never a 500 or the database's own message.
import { createLogger, createRegistry } from '@tenantdb/observability';
import { captureLogs } from '@tenantdb/testkit';
import { describe, expect, it } from 'vitest';
import { createHttpApp } from './app-base';
import { isDependencyUnavailable } from './errors';

const pgError = (message: string, code?: string) => Object.assign(new Error(message), code ? { code } : {});

describe('isDependencyUnavailable', () => {
  it('recognises pool timeouts, refused and dropped connections, and shutdowns', () => {
    expect(isDependencyUnavailable(pgError('timeout exceeded when trying to connect'))).toBe(true);
    expect(isDependencyUnavailable(pgError('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED'))).toBe(
      true,
    );
    expect(isDependencyUnavailable(pgError('Connection terminated unexpectedly'))).toBe(true);
    expect(
      isDependencyUnavailable(pgError('terminating connection due to administrator command', '57P01')),
    ).toBe(true);
    expect(isDependencyUnavailable(pgError('connection failure', '08006'))).toBe(true);
    expect(
      isDependencyUnavailable(pgError('job queue unavailable: Redis is down', 'EQUEUE_UNAVAILABLE')),
    ).toBe(true);
  });

  it('leaves query errors alone', () => {
    expect(isDependencyUnavailable(pgError('duplicate key value violates unique constraint', '23505'))).toBe(
      false,
    );
    expect(isDependencyUnavailable(pgError('syntax error at or near "x"', '42601'))).toBe(false);
    expect(isDependencyUnavailable('timeout exceeded when trying to connect')).toBe(false);
  });
});

describe('error handler', () => {
  it('answers 503 with Retry-After in the error shape when the catalog cannot serve', async () => {
    const logs = captureLogs();
    const app = await createHttpApp({
      name: 'test',
      version: '0',
      description: 'test',
      logger: createLogger({ name: 'test', level: 'info' }, logs.stream),
      registry: createRegistry('test'),
      tokens: [],
      rateLimitPerMinute: 1000,
      bodyLimitBytes: 1024,
      readiness: {},
    });
    app.get('/pool-timeout', async () => {
      throw pgError('timeout exceeded when trying to connect');
    });
    app.get('/check-violation', async () => {
      throw Object.assign(
        pgError('new row violates check constraint "db_servers_cpu_limit_check"', '23514'),
        {
          constraint: 'db_servers_cpu_limit_check',
          detail: 'Failing row contains (secret_stuff)',
        },
      );
    });
    app.get('/query-bug', async () => {
      throw pgError('column "secret_stuff" does not exist', '42703');
    });

    const unavailable = await app.inject({ method: 'GET', url: '/pool-timeout' });
    expect(unavailable.statusCode).toBe(503);
    expect(unavailable.headers['retry-after']).toBe('2');
    const body = unavailable.json();
    expect(body).toMatchObject({ statusCode: 503, error: 'Service Unavailable' });
    expect(body.requestId).toEqual(expect.any(String));

    const refused = await app.inject({ method: 'GET', url: '/check-violation' });
    expect(refused.statusCode).toBe(400);
    expect(refused.json()).toMatchObject({
      statusCode: 400,
      message: 'a value in the request is out of range or not accepted',
    });
    expect(refused.body).not.toContain('secret_stuff');
    expect(logs.text()).toContain('db_servers_cpu_limit_check');
    expect(logs.text()).not.toContain('secret_stuff');

    const bug = await app.inject({ method: 'GET', url: '/query-bug' });
    expect(bug.statusCode).toBe(500);
    expect(bug.body).not.toContain('secret_stuff');
    await app.close();
  });
});

// Responses go out checked against their route's schema: unknown keys stripped, and an answer that
// does not match becomes a 500 that says nothing of what it held.
import { Writable } from 'node:stream';
import { createLogger, Registry } from '@tenantdb/observability';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createHttpApp, type HttpApp } from '../src';

const Answer = z.object({ id: z.uuid(), at: z.iso.datetime(), n: z.number().int() });
const lines: string[] = [];
let app: HttpApp;

beforeAll(async () => {
  const logs = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  app = await createHttpApp({
    name: 'test',
    version: '0.0.0',
    description: 'serializer test',
    logger: createLogger({ name: 'test', level: 'error' }, logs),
    registry: new Registry(),
    tokens: [],
    rateLimitPerMinute: 1_000,
    bodyLimitBytes: 1_024,
    readiness: {},
  });
  const answers: Record<string, unknown> = {
    good: {
      id: crypto.randomUUID(),
      at: new Date(0).toISOString(),
      n: 1,
      admin_password_enc: 'v1:k1:c2VjcmV0',
    },
    bad: { id: 'not-a-uuid', at: new Date(0).toISOString(), n: 1.5, note: 'hunter2' },
  };
  app.get('/answer/:kind', { schema: { response: { 200: Answer } } }, async (request) => {
    return answers[(request.params as { kind: string }).kind] as z.infer<typeof Answer>;
  });
  await app.ready();
});
afterAll(async () => {
  await app?.close();
});

describe('response serialization', () => {
  it('sends what the schema describes and strips any other key', async () => {
    const res = await app.inject({ method: 'GET', url: '/answer/good' });
    expect(res.statusCode).toBe(200);
    expect(Object.keys(res.json()).sort()).toEqual(['at', 'id', 'n']);
    expect(res.body).not.toContain('admin_password_enc');
  });

  it('answers 500 without the value when the answer breaks the schema', async () => {
    const res = await app.inject({ method: 'GET', url: '/answer/bad' });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toMatchObject({ statusCode: 500, message: 'internal error' });
    expect(res.body).not.toContain('hunter2');
    expect(res.body).not.toContain('not-a-uuid');
    // logged as a failed request, naming the route
    expect(lines.join('\n')).toMatch(/GET.*\/answer\/:kind|\/answer\/:kind.*GET/);
  });
});

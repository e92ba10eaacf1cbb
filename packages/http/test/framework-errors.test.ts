// Errors Fastify raises before a route runs (a malformed URL, a path parameter over the router's
// limit) answer in the one error shape, with the request id, without repeating the URL.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { z } from 'zod';
import type { HttpApp } from '../src';
import { createTestApp } from './test-app';

let app: HttpApp;

beforeAll(async () => {
  app = await createTestApp();
  app.get('/things/:id', { schema: { params: z.object({ id: z.string() }) } }, async () => ({ ok: true }));
  await app.ready();
});
afterAll(() => app.close());

it.each([
  ['a malformed percent-encoding', '/things/%zz<script>', 400, 'the URL is not validly encoded'],
  ['a truncated multi-byte encoding', '/things/%E0%A4%A', 400, 'the URL is not validly encoded'],
  [
    'a path parameter over the router limit',
    `/things/${'x'.repeat(150)}<script>`,
    414,
    'a path parameter is too long',
  ],
])('%s: the error shape with the request id, the URL not echoed', async (_what, url, status, message) => {
  const response = await app.inject({ method: 'GET', url, headers: { 'x-request-id': 'req-framework-1' } });
  expect(response.statusCode).toBe(status);
  expect(response.json()).toEqual({
    statusCode: status,
    error: status === 414 ? 'URI Too Long' : 'Bad Request',
    message,
    requestId: 'req-framework-1',
  });
  expect(response.body).not.toContain('<script>');
});

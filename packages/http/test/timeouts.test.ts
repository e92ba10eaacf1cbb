// A client that never finishes its request (a slow or stalled body, headers that never end) is
// cut off at the request deadline instead of holding a socket for ever; a normal request is not.
import { connect } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { HttpApp } from '../src';
import { createTestApp } from './test-app';

let app: HttpApp;
let port: number;

beforeAll(async () => {
  app = await createTestApp({ requestTimeoutMs: 500 });
  app.post('/echo', async (request) => ({ got: request.body }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
});
afterAll(() => app.close());

/** Sends `text` and waits for the server to end the connection; what it answered, if anything. */
function sendAndWait(text: string, boundMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    const bound = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server still held the connection after ${boundMs} ms`));
    }, boundMs);
    socket.on('data', (chunk) => {
      answer += chunk.toString('utf8');
    });
    socket.on('close', () => {
      clearTimeout(bound);
      resolve(answer);
    });
    socket.on('error', () => {});
    socket.write(text);
  });
}

it('a body that stops half way: 408 and the socket closed', async () => {
  const answer = await sendAndWait(
    'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":',
  );
  expect(answer).toMatch(/^HTTP\/1\.1 408 /);
});

it('headers that never end: the socket is closed', async () => {
  const answer = await sendAndWait('POST /echo HTTP/1.1\r\nHost: x\r\n');
  expect(answer === '' || /^HTTP\/1\.1 408 /.test(answer)).toBe(true);
});

it('a request sent in full is answered as usual', async () => {
  const response = await fetch(`http://127.0.0.1:${port}/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ a: 1 }),
  });
  expect(response.status).toBe(200);
  expect(await response.json()).toEqual({ got: { a: 1 } });
});

// What a start that cannot finish says: which server, which address, and why.
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, waitForPort } from './ports';
import { startRedis } from './redis';

let held: Server | undefined;
afterEach(() => {
  held?.close();
  held = undefined;
});

describe('waitForPort', () => {
  it('returns once something listens, and names the server, the address and the last error when nothing does', async () => {
    const port = await freePort();
    await expect(waitForPort(port, { what: 'a test server', timeoutMs: 300 })).rejects.toThrow(
      new RegExp(
        `^a test server on 127\\.0\\.0\\.1:${port} did not accept a connection within 300 ms .*ECONNREFUSED`,
      ),
    );
    held = createServer().listen(port, '127.0.0.1');
    await waitForPort(port, { what: 'a test server', timeoutMs: 5_000 });
  });

  it('stops at once when told the server is gone', async () => {
    const port = await freePort();
    const started = Date.now();
    await expect(
      waitForPort(port, { what: 'a test server', timeoutMs: 60_000, gaveUp: () => 'exited (1)' }),
    ).rejects.toThrow(`a test server on 127.0.0.1:${port} exited (1)`);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('startRedis', () => {
  it('says that redis-server exited, and why, when its port is taken', async () => {
    const port = await freePort();
    held = createServer().listen(port, '127.0.0.1');
    await new Promise((r) => held!.once('listening', r));
    await expect(startRedis({ port })).rejects.toThrow(
      new RegExp(
        `redis-server on 127\\.0\\.0\\.1:${port} exited while starting \\(1\\): .*Failed listening on port ${port}`,
        'i',
      ),
    );
  });
});

// A private redis-server for tests and the dev stack (Debian's redis-server, from PATH).
import { spawn } from 'node:child_process';
import { Socket } from 'node:net';
import { freePort } from './ports';

export interface RunningRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
  /** Starts it again on the same port (after stop). */
  start(): Promise<void>;
}

export class RedisNotInstalledError extends Error {
  constructor() {
    super('redis-server was not found on PATH. Install it with: sudo apt-get install -y redis-server');
    this.name = 'RedisNotInstalledError';
  }
}

export async function startRedis(opts: { port?: number } = {}): Promise<RunningRedis> {
  const port = opts.port ?? (await freePort());
  let child: ReturnType<typeof spawn> | undefined;

  const start = async () => {
    const proc = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: 'ignore' },
    );
    child = proc;
    await new Promise<void>((resolve, reject) => {
      proc.once('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'ENOENT' ? new RedisNotInstalledError() : err),
      );
      proc.once('spawn', () => resolve());
    });
    await waitForPort(port, 10_000);
  };

  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    start,
    async stop() {
      const proc = child;
      if (!proc || proc.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        proc.once('exit', () => resolve());
        proc.kill('SIGKILL');
      });
    },
  };
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
      socket.connect(port, '127.0.0.1');
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

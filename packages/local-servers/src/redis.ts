// A private redis-server for tests and the dev stack (Debian's redis-server, from PATH).
import { spawn } from 'node:child_process';
import { freePort, READY_TIMEOUT_MS, waitForPort } from './ports';

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

export interface StartRedisOptions {
  port?: number;
  /** How long it may take to accept connections (default READY_TIMEOUT_MS, 60 s). */
  readyTimeoutMs?: number;
}

export async function startRedis(opts: StartRedisOptions = {}): Promise<RunningRedis> {
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
      // stdout is read only for the error message of a server that exits while starting.
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    let output = '';
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-2_000);
    };
    proc.stdout?.on('data', collect);
    child = proc;
    await new Promise<void>((resolve, reject) => {
      proc.once('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'ENOENT' ? new RedisNotInstalledError() : err),
      );
      proc.once('spawn', () => resolve());
    });
    try {
      await waitForPort(port, {
        what: 'redis-server',
        // Anything else holding the port (a lost race for it) must not pass for this server.
        probe: { send: 'PING\r\n', expect: '+PONG' },
        timeoutMs: opts.readyTimeoutMs ?? READY_TIMEOUT_MS,
        gaveUp: () =>
          proc.exitCode !== null || proc.signalCode !== null
            ? `exited while starting (${proc.exitCode ?? proc.signalCode}): ${lastLine(output)}`
            : undefined,
      });
    } catch (err) {
      proc.kill('SIGKILL');
      throw err;
    }
    // Past start-up its output is not needed; keep reading so that the pipe never fills.
    proc.stdout?.off('data', collect);
    proc.stdout?.resume();
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

function lastLine(output: string): string {
  return (
    output
      .trim()
      .split('\n')
      .reverse()
      .find((l) => l.trim())
      ?.trim() ?? 'no output'
  );
}

import { createServer, Socket } from 'node:net';

/**
 * How long a private server may take to start before we give up. Generous: on a shared 2-core CI
 * machine a redis-server or Postgres has taken over 10 s; the waits poll, so a fast start stays fast.
 */
export const READY_TIMEOUT_MS = 60_000;

/** A free TCP port on the loopback interface, as the kernel hands it out. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export interface WaitForPortOptions {
  /** Which server this is, for the error (e.g. "redis-server"). */
  what: string;
  host?: string;
  /** Default READY_TIMEOUT_MS. */
  timeoutMs?: number;
  /** A reason to stop waiting at once (e.g. the process exited), checked before every attempt. */
  gaveUp?: () => string | undefined;
  /**
   * What to send once connected, and how the answer must start: without it, accepting the
   * connection is enough (and anything on that port would do).
   */
  probe?: { send: string; expect: string };
}

/** Connects until something accepts on host:port; the error names the server, the address and the last failure. */
export async function waitForPort(port: number, opts: WaitForPortOptions): Promise<void> {
  const host = opts.host ?? '127.0.0.1';
  const timeoutMs = opts.timeoutMs ?? READY_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  let attempts = 0;
  let lastError = 'no attempt made';
  for (;;) {
    const reason = opts.gaveUp?.();
    if (reason) throw new Error(`${opts.what} on ${host}:${port} ${reason}`);
    attempts++;
    const error = await connectOnce(host, port, opts.probe);
    if (error === undefined) return;
    lastError = error;
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `${opts.what} on ${host}:${port} did not accept a connection within ${timeoutMs} ms ` +
      `(${attempts} attempts; last error: ${lastError})`,
  );
}

/** undefined when the connection was accepted (and the probe answered), the error otherwise. */
function connectOnce(
  host: string,
  port: number,
  probe: WaitForPortOptions['probe'],
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let answer = '';
    const done = (error: string | undefined) => {
      socket.destroy();
      resolve(error);
    };
    socket.setTimeout(2_000, () =>
      done(
        probe ? `no answer to ${JSON.stringify(probe.send.trim())} within 2 s` : 'no connection within 2 s',
      ),
    );
    socket.once('connect', () => {
      if (!probe) return done(undefined);
      socket.write(probe.send);
    });
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('utf8');
      if (answer.length < probe!.expect.length) return;
      done(
        answer.startsWith(probe!.expect)
          ? undefined
          : `answered ${JSON.stringify(answer.slice(0, 200).trim())}`,
      );
    });
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    socket.connect(port, host);
  });
}

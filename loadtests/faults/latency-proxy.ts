// A TCP proxy on a loopback port that delays every chunk, both ways, by a fixed latency: a pool
// server behind it is a slow one. Order is kept (each direction is one queue of timers).
import { connect, createServer, type Socket } from 'node:net';

export interface LatencyProxy {
  port: number;
  /** Chunks forwarded so far (both ways): the proxy was really in the path. */
  readonly chunks: number;
  close(): Promise<void>;
}

export async function startLatencyProxy(target: { host: string; port: number }, latencyMs: number) {
  const sockets = new Set<Socket>();
  let chunks = 0;
  const pipeSlowly = (from: Socket, to: Socket) => {
    let last = 0;
    from.on('data', (chunk: Buffer) => {
      chunks++;
      // Never earlier than the chunk before it: TCP order is kept.
      const at = Math.max(Date.now() + latencyMs, last);
      last = at;
      setTimeout(() => {
        if (!to.destroyed) to.write(chunk);
      }, at - Date.now());
    });
    from.on('end', () => setTimeout(() => to.end(), Math.max(0, last - Date.now())));
    from.on('error', () => to.destroy());
    from.on('close', () => setTimeout(() => to.destroy(), Math.max(0, last - Date.now())));
  };
  const server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    pipeSlowly(client, upstream);
    pipeSlowly(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || !address) throw new Error('the proxy has no port');
  return {
    port: address.port,
    get chunks() {
      return chunks;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  } satisfies LatencyProxy;
}

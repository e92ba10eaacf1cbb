// A TCP proxy on a loopback port in front of a real server (a pool Postgres): it counts the
// connections it carries — opened in all, open now, the most open at once — and can delay every
// chunk both ways by a fixed latency (a slow server). Proxies that share a ConnectionCount also
// count together: a fleet of them measures how many connections were open at once in all.
import { connect, createServer, type Socket } from 'node:net';

/** Connections through one proxy, or through every proxy that shares it. */
export class ConnectionCount {
  opened = 0;
  open = 0;
  maxOpen = 0;

  connected(): void {
    this.opened++;
    this.open++;
    this.maxOpen = Math.max(this.maxOpen, this.open);
  }

  closed(): void {
    this.open--;
  }

  /** Starts counting afresh (open connections stay counted as open). */
  reset(): void {
    this.opened = 0;
    this.maxOpen = this.open;
  }
}

export interface TcpProxy {
  port: number;
  /** This proxy's own connections. */
  readonly count: ConnectionCount;
  /** Chunks forwarded so far (both ways): the proxy was really in the path. */
  readonly chunks: number;
  close(): Promise<void>;
}

export interface TcpProxyOptions {
  /** Added to every chunk, both ways (order is kept). */
  latencyMs?: number;
  /** Counts this proxy's connections too (shared by several proxies: their total). */
  shared?: ConnectionCount;
}

export async function startTcpProxy(
  target: { host: string; port: number },
  opts: TcpProxyOptions = {},
): Promise<TcpProxy> {
  const latencyMs = opts.latencyMs ?? 0;
  const count = new ConnectionCount();
  const sockets = new Set<Socket>();
  let chunks = 0;
  const pipe = (from: Socket, to: Socket) => {
    let last = 0;
    from.on('data', (chunk: Buffer) => {
      chunks++;
      if (latencyMs === 0) {
        if (!to.destroyed) to.write(chunk);
        return;
      }
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
    // Counted from accept until either side ends it. Not until the client's socket closes: a client
    // in another process that closes one connection and at once opens the next, as a bounded pass
    // does, could be seen holding both. The proxy relays the server's end to the client, and the
    // client's close waits for it, so counting off at the server's end (or the client's, whichever
    // comes first) happens before the client can open its next connection.
    count.connected();
    opts.shared?.connected();
    let done = false;
    const finished = () => {
      if (done) return;
      done = true;
      count.closed();
      opts.shared?.closed();
    };
    const upstream = connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('end', finished);
      s.on('close', () => {
        sockets.delete(s);
        finished();
      });
    }
    pipe(client, upstream);
    pipe(upstream, client);
  });
  server.on('error', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || !address) throw new Error('the proxy has no port');
  return {
    port: address.port,
    count,
    get chunks() {
      return chunks;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

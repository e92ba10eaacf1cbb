// A portal's callback endpoint on a loopback port, for tests and benchmarks: it keeps every
// request instance-service sends (body, headers, arrival time) and answers each delivery's
// successive requests as the caller scripts them (a status, a reset connection, no answer), so a
// test can make the receiver fail the way it needs.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One answer: 200, another status, the connection reset, or no answer at all (until close). */
export type CallbackAnswer = 'ok' | { status: number } | 'reset' | 'hang';

export interface ReceivedCallback {
  /** X-Tenantdb-Delivery: the instance the callback is about. */
  delivery: string;
  headers: IncomingHttpHeaders;
  /** The raw body, the bytes that were signed. */
  body: string;
  /** performance.now() once the whole body had arrived. */
  at: number;
  answered: number | 'reset' | 'hang';
  /** X-Tenantdb-Signature checked against `secret`; undefined without a secret. */
  signatureValid?: boolean;
}

export interface CallbackReceiverOptions {
  /**
   * Answers to each delivery's successive requests (counted per X-Tenantdb-Delivery); every
   * request past the list is answered 200.
   */
  answers?: CallbackAnswer[];
  /**
   * The callback secret. With it, a request whose signature is not the HMAC-SHA256 of
   * `${X-Tenantdb-Timestamp}.${body}` (the contract of `InstanceCallback`) is answered 401, as a portal would, and does not use up
   * an answer.
   */
  secret?: string;
  /** The loopback address to listen on (127.0.0.1); any of 127/8 works on Linux. */
  host?: string;
  /** The port (0: any free one). */
  port?: number;
}

export type CallbackReceiver = Awaited<ReturnType<typeof startCallbackReceiver>>;

export async function startCallbackReceiver(opts: CallbackReceiverOptions = {}) {
  const answers = opts.answers ?? [];
  const received: ReceivedCallback[] = [];
  const byDelivery = new Map<string, ReceivedCallback[]>();
  const answeredPerDelivery = new Map<string, number>();

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = performance.now();
      const body = Buffer.concat(chunks).toString('utf8');
      const delivery = String(req.headers['x-tenantdb-delivery'] ?? '');
      const signatureValid =
        opts.secret === undefined
          ? undefined
          : signatureMatches(
              opts.secret,
              body,
              req.headers['x-tenantdb-signature'],
              req.headers['x-tenantdb-timestamp'],
            );
      let answer: CallbackAnswer = { status: 401 };
      if (signatureValid !== false) {
        const n = answeredPerDelivery.get(delivery) ?? 0;
        answeredPerDelivery.set(delivery, n + 1);
        answer = answers[n] ?? 'ok';
      }
      const answered = answer === 'ok' ? 200 : typeof answer === 'string' ? answer : answer.status;
      const entry: ReceivedCallback = { delivery, headers: req.headers, body, at, answered, signatureValid };
      received.push(entry);
      const ofDelivery = byDelivery.get(delivery) ?? [];
      ofDelivery.push(entry);
      byDelivery.set(delivery, ofDelivery);
      if (answered === 'reset') req.socket.destroy();
      else if (answered === 'hang') return;
      else res.writeHead(answered).end(answered < 300 ? 'ok' : 'try again');
    });
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, host, resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}/hooks/tenantdb`,
    port,
    /** Every request, in arrival order. */
    received,
    /** The requests of one delivery (instance id), in order. */
    for: (delivery: string): readonly ReceivedCallback[] => byDelivery.get(delivery) ?? [],
    /** Stops listening; hanging requests and idle connections are cut. */
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function signatureMatches(
  secret: string,
  body: string,
  header: string | string[] | undefined,
  timestamp: string | string[] | undefined,
): boolean {
  if (typeof header !== 'string' || typeof timestamp !== 'string') return false;
  const expected = Buffer.from(
    `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`,
  );
  const presented = Buffer.from(header.trim());
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

// The background load during a fault: a few clients allocating and releasing through
// database-service's HTTP API (loopback), bounded in count and time. Every 200 is recorded with its
// credentials; every request whose outcome is unknown (refused, reset, 5xx, 202) is settled
// afterwards by asking again with the same instance_id, which is idempotent.
import { randomUUID } from 'node:crypto';
import type { Acknowledged } from './invariants';

export interface LoadOptions {
  baseUrl: string;
  token: string;
  /** Concurrent clients. */
  clients?: number;
  /** Requests per client, at most. */
  maxRequests?: number;
  /** Pause between a client's requests. */
  pauseMs?: number;
  /** Share of acknowledged allocations the client releases again. */
  releaseShare?: number;
}

export interface LoadResult {
  requests: number;
  byStatus: Record<string, number>;
}

export interface Load {
  /** Every allocation answered 200, by instance_id. */
  acknowledged: Map<string, Acknowledged>;
  readonly requests: number;
  /** Resolves once every client has made at least n more requests. */
  progress(n: number, timeoutMs?: number): Promise<void>;
  /** Stops the clients (after the request in hand). */
  stop(): Promise<LoadResult>;
  /**
   * Settles every request whose outcome is unknown: allocate again until 200, release again until
   * released; returns the requests it took. The stack must be whole again.
   */
  settle(timeoutMs?: number): Promise<number>;
}

interface Answer {
  /** refused: no connection was made, so the request was never seen; network: anything else. */
  status: number | 'refused' | 'network';
  // biome-ignore lint/suspicious/noExplicitAny: a parsed JSON body, read field by field
  body: any;
}

export function startLoad(opts: LoadOptions): Load {
  const clients = opts.clients ?? 3;
  const maxRequests = opts.maxRequests ?? 400;
  const pauseMs = opts.pauseMs ?? 100;
  const releaseShare = opts.releaseShare ?? 0.5;
  const acknowledged = new Map<string, Acknowledged>();
  const customers = new Map<string, string>();
  /** instance_ids whose allocate outcome is unknown, and those whose release is. */
  const unsettledAllocations = new Set<string>();
  const unsettledReleases = new Set<string>();
  const byStatus: Record<string, number> = {};
  const perClient = new Array<number>(clients).fill(0);
  let requests = 0;
  let stopped = false;

  async function call(method: 'POST' | 'DELETE', path: string, body?: unknown): Promise<Answer> {
    requests++;
    try {
      const res = await fetch(`${opts.baseUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${opts.token}`,
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        ...(body ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(30_000),
      });
      const text = await res.text();
      byStatus[res.status] = (byStatus[res.status] ?? 0) + 1;
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    } catch (err) {
      const refused = (err as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED';
      const status = refused ? 'refused' : 'network';
      byStatus[status] = (byStatus[status] ?? 0) + 1;
      return { status, body: undefined };
    }
  }

  async function allocate(instanceId: string): Promise<boolean> {
    const customerId = customers.get(instanceId)!;
    const res = await call('POST', '/api/database/allocate', {
      instance_id: instanceId,
      customer_id: customerId,
      plan_tier: 'standard',
    });
    if (res.status === 200) {
      const previous = acknowledged.get(instanceId);
      const c = res.body;
      const credentials = {
        db_server_id: c.db_server_id,
        db_host: c.db_host,
        db_port: c.db_port,
        db_name: c.db_name,
        db_user: c.db_user,
        db_password: c.db_password,
        ...(c.sslmode ? { sslmode: c.sslmode, ssl_root_cert: c.ssl_root_cert } : {}),
      };
      // A repeat must answer the very same database and password.
      if (previous && JSON.stringify(previous.credentials) !== JSON.stringify(credentials))
        throw new Error(`allocate of ${instanceId} answered different credentials on a repeat`);
      acknowledged.set(instanceId, { instance_id: instanceId, credentials, released: false });
      unsettledAllocations.delete(instanceId);
      return true;
    }
    if (typeof res.status === 'number' && res.status < 500 && res.status !== 202 && res.status !== 429)
      throw new Error(`allocate answered ${res.status}: ${JSON.stringify(res.body)}`);
    // Refused before it was sent: nothing happened, nothing to settle (unless asked before).
    if (res.status !== 'refused') unsettledAllocations.add(instanceId);
    return false;
  }

  async function release(instanceId: string): Promise<boolean> {
    const res = await call('DELETE', `/api/database/allocations/${instanceId}`);
    if (res.status === 200 || res.status === 204) {
      acknowledged.get(instanceId)!.released = true;
      unsettledReleases.delete(instanceId);
      return true;
    }
    if (typeof res.status === 'number' && res.status < 500 && res.status !== 409 && res.status !== 429)
      throw new Error(`release answered ${res.status}: ${JSON.stringify(res.body)}`);
    unsettledReleases.add(instanceId);
    return false;
  }

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const runs = perClient.map(async (_, i) => {
    while (!stopped && perClient[i]! < maxRequests) {
      const id = randomUUID();
      customers.set(id, randomUUID());
      perClient[i]!++;
      const allocated = await allocate(id);
      if (allocated && Math.random() < releaseShare && !stopped) {
        perClient[i]!++;
        await release(id);
      }
      // A part that is away is not hammered: a client that got no allocation waits longer.
      await sleep(allocated ? pauseMs : pauseMs * 5);
    }
  });
  const done = Promise.all(runs);
  done.catch(() => {});

  return {
    acknowledged,
    get requests() {
      return requests;
    },
    async progress(n, timeoutMs = 60_000) {
      const target = perClient.map((c) => c + n);
      const deadline = Date.now() + timeoutMs;
      while (perClient.some((c, i) => c < Math.min(target[i]!, maxRequests))) {
        if (Date.now() > deadline) throw new Error(`the load made no progress in ${timeoutMs} ms`);
        await Promise.race([sleep(100), done]);
      }
    },
    async stop() {
      stopped = true;
      await done;
      return { requests, byStatus: { ...byStatus } };
    },
    async settle(timeoutMs = 180_000) {
      const before = requests;
      const deadline = Date.now() + timeoutMs;
      while (unsettledAllocations.size + unsettledReleases.size > 0) {
        if (Date.now() > deadline)
          throw new Error(
            `${unsettledAllocations.size} allocations and ${unsettledReleases.size} releases still unsettled`,
          );
        for (const id of [...unsettledAllocations]) await allocate(id);
        for (const id of [...unsettledReleases]) await release(id);
        if (unsettledAllocations.size + unsettledReleases.size > 0) await sleep(1_000);
      }
      return requests - before;
    },
  };
}

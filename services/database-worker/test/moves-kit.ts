// What the move tests share: pools made through the API, a tenant's own connection (as its client
// would open it, TLS verify-full from the allocate answer), a writer that keeps writing through a
// move and remembers every write it saw acknowledged, and waiting for a move's phase.
import type { DbServer } from '@tenantdb/catalog';
import { type TenantCredentials, tenantSsl } from '@tenantdb/testkit';
import pg from 'pg';
import { type AllocateIds, type Fleet, newIds, sleep, waitFor } from './harness';

export async function makePool(
  f: Fleet,
  body: { name: string; priority: number; max_instances?: number; postgres_major?: number },
): Promise<DbServer> {
  const res = await f.api('POST', '/api/database/admin/pools', { max_instances: 5, ...body }, f.adminToken);
  if (res.status !== 202) throw new Error(`create pool answered ${res.status}: ${JSON.stringify(res.body)}`);
  const id = res.body.pool.id as string;
  await f.waitForServer((servers) => servers.some((s) => s.id === id && s.status === 'active'), 90_000);
  return (await f.servers()).find((s) => s.id === id)!;
}

export async function allocate(f: Fleet, ids: AllocateIds = newIds()) {
  const res = await f.allocateUntilReady(ids);
  return { ids, creds: res.body as TenantCredentials & { db_server_id: string } };
}

export async function asTenant<T extends pg.QueryResultRow>(
  c: TenantCredentials,
  text: string,
  values: unknown[] = [],
): Promise<T[]> {
  const client = tenantClient(c);
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

export function tenantClient(c: TenantCredentials): pg.Client {
  const client = new pg.Client({
    host: c.db_host,
    port: c.db_port,
    database: c.db_name,
    user: c.db_user,
    password: c.db_password,
    ssl: tenantSsl(c),
    connectionTimeoutMillis: 3_000,
  });
  client.on('error', () => {});
  return client;
}

/**
 * Inserts one row at a time as the tenant, reconnecting with the credentials allocate answers now
 * (a moved tenant's new address) whenever a write fails. `acked` holds every value whose INSERT
 * came back; `gaps` the longest time between two acknowledged writes.
 */
export function startWriter(f: Fleet, ids: AllocateIds, table: string) {
  const acked: number[] = [];
  let stop = false;
  let longestGapMs = 0;
  let lastAck = performance.now();
  let failures = 0;
  const done = (async () => {
    let n = 0;
    let client: pg.Client | undefined;
    while (!stop) {
      try {
        if (!client) {
          const creds = (await f.api('POST', '/api/database/allocate', ids)).body as TenantCredentials;
          client = tenantClient(creds);
          await client.connect();
        }
        n++;
        await client.query(`INSERT INTO ${table} (v) VALUES ($1)`, [n]);
        acked.push(n);
        const now = performance.now();
        longestGapMs = Math.max(longestGapMs, now - lastAck);
        lastAck = now;
        await sleep(5);
      } catch {
        failures++;
        await client?.end().catch(() => {});
        client = undefined;
        await sleep(50);
      }
    }
    await client?.end().catch(() => {});
  })();
  return {
    acked,
    stats: () => ({ longestGapMs: Math.round(longestGapMs), failures, acked: acked.length }),
    async stop() {
      stop = true;
      await done;
    },
  };
}

export async function moveOf(f: Fleet, id: string) {
  const res = await f.api('GET', `/api/database/admin/moves/${id}`, undefined, f.adminToken);
  return res.body;
}

export async function waitForPhase(f: Fleet, id: string, phases: string[], timeoutMs = 120_000) {
  let last: { phase: string; error: string | null } | undefined;
  await waitFor(
    async () => {
      last = await moveOf(f, id);
      if (last && ['failed', 'cancelled', 'done'].includes(last.phase) && !phases.includes(last.phase))
        throw new Error(`move ended ${last.phase}: ${last.error}`);
      return !!last && phases.includes(last.phase);
    },
    timeoutMs,
    `move ${id} to reach ${phases.join('/')}`,
  );
  return (await moveOf(f, id)) as Record<string, unknown> & { phase: string };
}

/** current_instances of a server now. */
export async function slotsOf(f: Fleet, serverId: string): Promise<number> {
  return (await f.servers()).find((s) => s.id === serverId)!.current_instances;
}

// S1: allocation of new databases through the API under concurrency. Each answer creates a real
// role and database on a pool server, so the rate is bounded by CREATE DATABASE, not by the
// catalog: RAW-CREATE (the same DDL sent straight to the pool servers from as many clients) is
// measured first to show that bound on this machine.
import { randomUUID } from 'node:crypto';
import type { Allocated } from '@tenantdb/contracts';
import { generatePassword } from '@tenantdb/secrets';
import pg from 'pg';
import { httpError } from '../api';
import { type AllocatedTenant, type BenchContext, errorNotes, rowFrom, type Scenario } from '../context';
import { ACCEPTED, closedLoop, fail, OK, type OpenLoopResult, openLoop } from '../load';
import { connectMany, connectPg, endAll } from '../pg';
import { fmtRate } from '../report';
import type { PoolServer } from '../stack';

/** A role + database name that is not the service's (tdb_…), so nothing mistakes it for a tenant. */
export function rawNames(): { role: string; db: string; password: string } {
  const id = randomUUID().replaceAll('-', '').slice(0, 20);
  return { role: `bench_${id}_u`, db: `bench_${id}`, password: generatePassword() };
}

/**
 * RAW-CREATE's unit of work: a login role and a database it owns, straight on a pool server
 * (CREATE DATABASE with the default WAL_LOG strategy). `made` is called once the role exists, so
 * the caller can drop it even when the database then fails.
 */
export async function createRaw(
  c: pg.ClientBase,
  n: { role: string; db: string; password: string },
  made: () => void,
): Promise<void> {
  await c.query(`CREATE ROLE "${n.role}" LOGIN PASSWORD '${n.password}'`);
  made();
  await c.query(`CREATE DATABASE "${n.db}" OWNER "${n.role}"`);
}

/** A registered pool or a worker-provisioned one: what the raw scenarios need to reach it as admin. */
type AdminServer = Pick<PoolServer, 'id' | 'url'>;

export function adminClient(server: AdminServer): Promise<pg.Client> {
  return connectPg(server.url());
}

/** Drops what the raw scenarios created, a few at a time (outside any measurement). */
export async function dropRaw(created: { server: AdminServer; role: string; db: string }[]): Promise<void> {
  const queue = [...created];
  const worker = async () => {
    const clients = new Map<string, pg.Client>();
    try {
      for (let item = queue.shift(); item; item = queue.shift()) {
        let c = clients.get(item.server.id);
        if (!c) {
          c = await adminClient(item.server);
          clients.set(item.server.id, c);
        }
        await c.query(`DROP DATABASE IF EXISTS "${item.db}" WITH (FORCE)`);
        await c.query(`DROP ROLE IF EXISTS "${item.role}"`);
      }
    } finally {
      await endAll(clients.values());
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
}

/** database-service's admin connections per pool server (@tenantdb/pool-server's default). */
export const SERVICE_CONNECTIONS_PER_SERVER = 4;

/**
 * The raw baseline of an open-loop API run: request i of `servers` (the server the API placed
 * request i on, replayed) makes a role and a database with plain pg, started on the same schedule,
 * through a pool of as many admin connections per server as database-service keeps. Latency runs
 * from the scheduled start, so waiting for a connection counts as the service's queueing does.
 * What it made is dropped afterwards, outside the clock.
 */
export async function rawCreateAtRate(servers: AdminServer[], ratePerSec: number): Promise<OpenLoopResult> {
  const pools = new Map<string, pg.Pool>();
  for (const s of servers) {
    if (pools.has(s.id)) continue;
    const pool = new pg.Pool({
      connectionString: s.url(),
      max: SERVICE_CONNECTIONS_PER_SERVER,
      connectionTimeoutMillis: 30_000,
    });
    pool.on('error', () => {});
    pools.set(s.id, pool);
  }
  const created: { server: AdminServer; role: string; db: string }[] = [];
  try {
    // Connected before the clock: the service's connections are open already too.
    for (const pool of pools.values()) {
      const clients = await Promise.all(
        Array.from({ length: SERVICE_CONNECTIONS_PER_SERVER }, () => pool.connect()),
      );
      for (const c of clients) c.release();
    }
    return await openLoop(
      { ratePerSec, requests: servers.length, maxInFlight: servers.length },
      async (_worker, seq) => {
        const server = servers[seq]!;
        const c = await pools.get(server.id)!.connect();
        try {
          const n = rawNames();
          await createRaw(c, n, () => created.push({ server, role: n.role, db: n.db }));
          return OK;
        } finally {
          c.release();
        }
      },
    );
  } finally {
    await Promise.all([...pools.values()].map((p) => p.end().catch(() => {})));
    await dropRaw(created);
  }
}

export const rawCreate: Scenario = {
  id: 'raw-create',
  async run(ctx: BenchContext) {
    const { stack, settings } = ctx;
    const pools = stack.pools;
    // Workers split evenly over the pool servers, each with its own admin session.
    const clients = await connectMany(settings.concurrency, (w) => pools[w % pools.length]!.url());
    const created: { server: PoolServer; role: string; db: string }[] = [];
    try {
      const result = await closedLoop(
        {
          concurrency: settings.concurrency,
          durationMs: settings.rawCreateMaxMs,
          maxRequests: settings.rawCreateRequests,
        },
        async (worker) => {
          const c = clients[worker]!;
          const n = rawNames();
          await createRaw(c, n, () =>
            created.push({ server: pools[worker % pools.length]!, role: n.role, db: n.db }),
          );
          return OK;
        },
      );
      ctx.state.rawCreatePerSec = result.throughput;
      return {
        id: 'raw-create',
        title: 'RAW-CREATE ×N: CREATE ROLE + CREATE DATABASE straight on the pool servers',
        rows: [rowFrom('RAW-CREATE role + database (pg)', result, { unit: ' db/s', verdict: 'info' })],
        notes: [
          `${settings.concurrency} admin sessions split over ${pools.length} pool servers, ` +
            `${settings.rawCreateRequests} creations or ${settings.rawCreateMaxMs / 1000} s, whichever first: ` +
            'CREATE ROLE … LOGIN PASSWORD; CREATE DATABASE … OWNER (the default WAL_LOG strategy).',
          'This is the physical bound of S1 on this machine; the databases are dropped afterwards.',
          ...errorNotes(result),
        ],
      };
    } finally {
      await endAll(clients);
      await dropRaw(created);
    }
  },
};

export const allocateNew: Scenario = {
  id: 's1-allocate',
  needs: ['raw-tx', 'raw-create'],
  async run(ctx: BenchContext) {
    const { stack, settings, state } = ctx;
    const result = await closedLoop(
      {
        concurrency: settings.concurrency,
        durationMs: settings.allocateMaxMs,
        maxRequests: settings.allocateRequests,
      },
      async () => {
        const ids = { instance_id: randomUUID(), customer_id: randomUUID(), plan_tier: 'standard' };
        const res = await stack.api.post<Allocated>('/api/database/allocate', ids);
        if (res.status === 202) return ACCEPTED;
        if (res.status !== 200) return fail(httpError(res));
        const { status: _status, ...credentials } = res.body;
        state.allocated.push({ ...ids, ...credentials } satisfies AllocatedTenant);
        return OK;
      },
    );

    const perServer = new Map<string, number>();
    for (const a of state.allocated) perServer.set(a.db_server_id, (perServer.get(a.db_server_id) ?? 0) + 1);
    const spread = stack.pools.map((p) => `${p.name} ${perServer.get(p.id) ?? 0}`).join(', ');
    const raw = state.rawTxPerSec;
    const create = state.rawCreatePerSec;
    const baseline = [
      raw === undefined ? undefined : `RAW-TX ${fmtRate(raw, ' tx/s')}`,
      create === undefined ? undefined : `RAW-CREATE ${fmtRate(create, ' db/s')}`,
    ].filter(Boolean);
    const comparison = [
      raw === undefined ? undefined : `${((result.throughput / raw) * 100).toFixed(1)} % of RAW-TX`,
      create === undefined ? undefined : `${((result.throughput / create) * 100).toFixed(0)} % of RAW-CREATE`,
    ].filter(Boolean);

    return {
      id: 's1-allocate',
      title: 'S1: allocate new databases through the API',
      rows: [
        rowFrom('S1 POST /allocate, new instance', result, {
          unit: ' alloc/s',
          accepted: result.accepted,
          ...(baseline.length ? { baseline: baseline.join('; ') } : {}),
          ...(comparison.length ? { comparison: comparison.join('; ') } : {}),
          target: 'no errors, no 202',
          verdict: result.errors === 0 && result.accepted === 0 ? 'PASS' : 'FAIL',
        }),
      ],
      notes: [
        `${settings.concurrency} HTTP clients, ${settings.allocateRequests} requests or ${settings.allocateMaxMs / 1000} s, ` +
          'whichever first; a fresh instance_id per request, plan "standard"; pool capacity large enough that ' +
          'nothing answers 202.',
        'Every 200 has created a role and a database on a pool server (CREATE DATABASE, ~55 ms and ~20/s per ' +
          'server on this machine), so the ratio to RAW-TX is small by nature: compare with RAW-CREATE instead.',
        `Placement (strategy pack; concurrent reservations skip a locked pool): ${spread}.`,
        `Mean ${result.latency.mean.toFixed(1)} ms, p90 ${result.latency.p90.toFixed(1)} ms, max ${result.latency.max.toFixed(0)} ms.`,
        ...errorNotes(result),
      ],
    };
  },
};

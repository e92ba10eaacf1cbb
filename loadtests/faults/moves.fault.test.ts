// Tenant moves under faults: every database-worker SIGKILLed in each phase of a move (the copy of
// the schema, the logical sync, the cut-over, the clean-up, the grace period), both restarted, with
// a client writing to the tenant all along and the allocation load running beside it. After the
// reconciler the tenant is served from exactly one server with every write its client saw
// acknowledged, and nothing of the move is left (the move invariants in invariants.moves.ts).
import { randomUUID } from 'node:crypto';
import type { MovePhase } from '@tenantdb/catalog';
import { type TenantCredentials, tenantSsl } from '@tenantdb/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FaultStack, sleep, startFaultStack, waitUntil } from './stack';

let s: FaultStack;
beforeAll(async () => {
  s = await startFaultStack({ TENANTDB_MOVE_GRACE_MS: '3000' });
  await s.waitForCapacity(5);
  // A second pool, so each move has somewhere to go.
  const res = await s.admin('POST', '/api/database/admin/pools', { max_instances: 30, priority: 200 });
  expect(res.status).toBe(202);
  await waitUntil(
    async () =>
      (await s.servers()).filter((r) => r.status === 'active' && r.server_type === 'shared').length >= 2,
    120_000,
    'two active pools',
  );
});
afterAll(async () => {
  await s?.close();
});

async function allocate(ids: { instance_id: string; customer_id: string; plan_tier: string }) {
  const res = await fetch(`${s.stack.urls.databaseService}/api/database/allocate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.stack.secrets.allocateToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(ids),
  });
  return { status: res.status, body: (await res.json()) as TenantCredentials & { db_server_id: string } };
}

const client = (c: TenantCredentials) => {
  const pgc = new pg.Client({
    host: c.db_host,
    port: c.db_port,
    database: c.db_name,
    user: c.db_user,
    password: c.db_password,
    ssl: tenantSsl(c),
    connectionTimeoutMillis: 3_000,
  });
  pgc.on('error', () => {});
  return pgc;
};

/** Writes one row at a time, following the allocation's address through the move. */
function writer(ids: { instance_id: string; customer_id: string; plan_tier: string }) {
  const acked: number[] = [];
  let stop = false;
  const done = (async () => {
    let n = 0;
    let c: pg.Client | undefined;
    while (!stop) {
      try {
        if (!c) {
          const res = await allocate(ids);
          if (res.status !== 200) throw new Error(`allocate ${res.status}`);
          c = client(res.body);
          await c.connect();
        }
        n++;
        await c.query('INSERT INTO app.w (v) VALUES ($1)', [n]);
        acked.push(n);
        await sleep(10);
      } catch {
        await c?.end().catch(() => {});
        c = undefined;
        await sleep(100);
      }
    }
    await c?.end().catch(() => {});
  })();
  return {
    acked,
    async stop() {
      stop = true;
      await done;
    },
  };
}

/** An active shared pool with room other than `serverId`; a new one when there is none. */
async function targetFor(serverId: string) {
  const find = async () =>
    (await s.servers()).find(
      (r) =>
        r.status === 'active' &&
        r.server_type === 'shared' &&
        r.id !== serverId &&
        r.current_instances < r.max_instances - 2,
    );
  const found = await find();
  if (found) return found;
  const res = await s.admin('POST', '/api/database/admin/pools', { max_instances: 30, priority: 200 });
  expect(res.status).toBe(202);
  await waitUntil(async () => (await find()) !== undefined, 120_000, 'a pool to move to');
  return (await find())!;
}

const phaseOf = async (id: string) =>
  (await s.db.selectFrom('tenant_moves').select('phase').where('id', '=', id).executeTakeFirstOrThrow())
    .phase;

const KILL_IN: MovePhase[] = ['copying_schema', 'syncing', 'cutting_over', 'cleaning_up', 'grace'];

describe('a tenant move with every worker SIGKILLed in one of its phases', () => {
  for (const phase of KILL_IN) {
    it(`SIGKILL in ${phase}: served from one server with every acknowledged write, nothing left`, async () => {
      let landedIn = '';
      const ids = { instance_id: randomUUID(), customer_id: randomUUID(), plan_tier: 'standard' };
      let w: ReturnType<typeof writer> | undefined;
      let targetId = '';
      const report = await s.underLoad(
        {
          name: `database-worker SIGKILL during a move (${phase})`,
          injected: `a tenant moving under writes; both workers SIGKILLed once the move is in ${phase}, restarted`,
        },
        async () => {
          const first = await allocate(ids);
          expect(first.status).toBe(200);
          const c = client(first.body);
          await c.connect();
          // Enough data that the copy phases last long enough to be hit.
          await c.query(`CREATE SCHEMA app;
            CREATE TABLE app.w (id bigserial PRIMARY KEY, v integer NOT NULL);
            CREATE TABLE app.big (id bigserial PRIMARY KEY, v text);
            INSERT INTO app.big (v) SELECT repeat(md5(g::text), 4) FROM generate_series(1, 150000) g;`);
          await c.end();
          w = writer(ids);
          const target = await targetFor(first.body.db_server_id);
          targetId = target.id;
          const started = await s.admin('POST', '/api/database/admin/moves', {
            instance_id: ids.instance_id,
            target_server_id: target.id,
          });
          expect(started.status).toBe(202);
          const moveId = started.body.id as string;
          const order = KILL_IN.indexOf(phase);
          for (const deadline = Date.now() + 90_000; ; ) {
            const now = await phaseOf(moveId);
            const at = KILL_IN.indexOf(now as MovePhase);
            if (at >= order || now === 'dropping_source' || now === 'done') break;
            if (Date.now() > deadline) throw new Error(`the move never reached ${phase} (still ${now})`);
            await sleep(5);
          }
          await Promise.all([
            s.stack.process('database-worker-1').stop('SIGKILL'),
            s.stack.process('database-worker-2').stop('SIGKILL'),
          ]);
          landedIn = await phaseOf(moveId);
          await Promise.all([
            s.stack.process('database-worker-1').start(),
            s.stack.process('database-worker-2').start(),
          ]);
          await waitUntil(async () => (await phaseOf(moveId)) === 'done', 180_000, 'the move to finish');
        },
      );
      await w?.stop();
      console.log(
        `move SIGKILL aimed at ${phase}, landed in ${landedIn}; ${w?.acked.length} writes acknowledged`,
      );
      expect(report.violations).toEqual([]);
      // Served from the target, with every acknowledged write.
      const now = await allocate(ids);
      expect(now.body.db_server_id).toBe(targetId);
      const c = client(now.body);
      await c.connect();
      const { rows } = await c.query<{ v: number }>('SELECT v FROM app.w');
      const { rows: big } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM app.big');
      await c.end();
      const have = new Set(rows.map((r) => r.v));
      expect(w!.acked.filter((v) => !have.has(v))).toEqual([]);
      expect(big[0]!.n).toBe(150000);
    });
  }
});

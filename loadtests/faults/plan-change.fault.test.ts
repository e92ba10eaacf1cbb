// Plan changes under faults: a tenant changing to a dedicated plan while a client writes to it,
// with every database-worker SIGKILLed while the move waits for its dedicated server to be
// provisioned (awaiting_target), or while it copies (syncing), both restarted. Afterwards the
// tenant is served from its dedicated server with the new plan and every acknowledged write, and
// the invariants (slots, moves, servers) hold once the reconciler has run.
import { randomUUID } from 'node:crypto';
import type { MovePhase } from '@tenantdb/catalog';
import { type TenantCredentials, tenantSsl } from '@tenantdb/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FaultStack, sleep, startFaultStack, waitUntil } from './stack';

let s: FaultStack;
beforeAll(async () => {
  s = await startFaultStack({ TENANTDB_MOVE_GRACE_MS: '2000' });
  await s.waitForCapacity(5);
});
afterAll(async () => {
  await s?.close();
});

type Ids = { instance_id: string; customer_id: string; plan_tier: string };

async function allocate(ids: Ids) {
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

/** Writes one row at a time, following the allocation's address (as allocate answers it) through the move. */
function writer(ids: Ids) {
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

const phaseOf = async (id: string) =>
  (await s.db.selectFrom('tenant_moves').select('phase').where('id', '=', id).executeTakeFirstOrThrow())
    .phase;

const KILL_IN: MovePhase[] = ['awaiting_target', 'syncing'];

describe('a plan change to a dedicated plan with every worker SIGKILLed', () => {
  for (const phase of KILL_IN) {
    it(`SIGKILL in ${phase}: on its dedicated server with the new plan and every acknowledged write`, async () => {
      const ids = { instance_id: randomUUID(), customer_id: randomUUID(), plan_tier: 'standard' };
      let w: ReturnType<typeof writer> | undefined;
      let landedIn = '';
      const report = await s.underLoad(
        {
          name: `database-worker SIGKILL during a plan change to dedicated (${phase})`,
          injected: `a tenant changing to a dedicated plan under writes; both workers SIGKILLed once its move is in ${phase}, restarted`,
        },
        async () => {
          const first = await allocate(ids);
          expect(first.status).toBe(200);
          const c = client(first.body);
          await c.connect();
          await c.query(`CREATE SCHEMA app;
            CREATE TABLE app.w (id bigserial PRIMARY KEY, v integer NOT NULL);
            CREATE TABLE app.big (id bigserial PRIMARY KEY, v text);
            INSERT INTO app.big (v) SELECT repeat(md5(g::text), 4) FROM generate_series(1, 150000) g;`);
          await c.end();
          w = writer(ids);
          const started = await s.admin('POST', `/api/database/admin/allocations/${ids.instance_id}/plan`, {
            plan_tier: 'premium',
          });
          expect(started.status, JSON.stringify(started.body)).toBe(202);
          const moveId = started.body.move.id as string;
          const order = KILL_IN.indexOf(phase);
          const after = ['copying_schema', 'syncing', 'cutting_over', 'cleaning_up', 'grace', 'done'];
          for (const deadline = Date.now() + 120_000; ; ) {
            const now = await phaseOf(moveId);
            if (now === phase || (order > 0 && after.indexOf(now) >= after.indexOf(phase))) break;
            if (now === 'failed' || now === 'cancelled') throw new Error(`the move ended ${now}`);
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
          await waitUntil(
            async () => (await phaseOf(moveId)) === 'done',
            240_000,
            'the plan change to finish',
          );
        },
      );
      await w?.stop();
      console.log(
        `plan change SIGKILL aimed at ${phase}, landed in ${landedIn}; ${w?.acked.length} writes acknowledged`,
      );
      expect(report.violations).toEqual([]);
      const row = await s.db
        .selectFrom('tenant_databases as t')
        .innerJoin('db_servers as d', 'd.id', 't.db_server_id')
        .select(['t.plan_tier', 't.connection_limit', 'd.server_type', 'd.dedicated_to_instance_id'])
        .where('t.instance_id', '=', ids.instance_id)
        .where('t.status', '=', 'ready')
        .executeTakeFirstOrThrow();
      expect(row).toEqual({
        plan_tier: 'premium',
        connection_limit: 100,
        server_type: 'dedicated',
        dedicated_to_instance_id: ids.instance_id,
      });
      const now = await allocate(ids);
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

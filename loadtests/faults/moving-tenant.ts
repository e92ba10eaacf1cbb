// A tenant to move under faults (moves.fault.test.ts, plan-change.fault.test.ts): allocated with
// enough data that the copy phases last long enough to be hit, a client writing one row at a time
// that follows the allocation's address through the move, and the check afterwards — served from
// the target, with every write the client saw acknowledged and all of the data.
import { randomUUID } from 'node:crypto';
import { MOVE_PHASES, type MovePhase } from '@tenantdb/catalog';
import { type TenantCredentials, tenantSsl } from '@tenantdb/testkit';
import pg from 'pg';
import { expect } from 'vitest';
import { type FaultStack, sleep, waitUntil } from './stack';

type Ids = { instance_id: string; customer_id: string; plan_tier: string };
const BIG_ROWS = 150_000;

export function movingTenant(s: FaultStack) {
  const allocate = s.allocate;

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

  /** Where `phase` is in a move's way to done (undo phases come after done in MOVE_PHASES). */
  const step = (phase: string) => {
    const at = MOVE_PHASES.indexOf(phase as MovePhase);
    return at <= MOVE_PHASES.indexOf('done') ? at : -1;
  };

  /**
   * Polls the move until it is in `phase` (or, unless `exact`, any later phase on its way to
   * done); throws when it ended otherwise, went past an exact phase unseen, or never got there.
   */
  async function waitForPhase(id: string, phase: MovePhase, opts: { exact?: boolean; timeoutMs: number }) {
    for (const deadline = Date.now() + opts.timeoutMs; ; ) {
      const now = await phaseOf(id);
      if (now === phase) return now;
      if (step(now) < 0) throw new Error(`the move ended ${now} before ${phase}`);
      if (step(now) > step(phase)) {
        if (!opts.exact) return now;
        throw new Error(`the move went past ${phase} unseen (now ${now})`);
      }
      if (Date.now() > deadline) throw new Error(`the move never reached ${phase} (still ${now})`);
      await sleep(5);
    }
  }

  /** A new tenant with data and a writer on it. */
  async function seeded() {
    const ids = { instance_id: randomUUID(), customer_id: randomUUID(), plan_tier: 'standard' };
    const first = await allocate(ids);
    expect(first.status).toBe(200);
    const c = client(first.body);
    await c.connect();
    await c.query(`CREATE SCHEMA app;
      CREATE TABLE app.w (id bigserial PRIMARY KEY, v integer NOT NULL);
      CREATE TABLE app.big (id bigserial PRIMARY KEY, v text);
      INSERT INTO app.big (v) SELECT repeat(md5(g::text), 4) FROM generate_series(1, ${BIG_ROWS}) g;`);
    await c.end();
    return { ids, writer: writer(ids), sourceId: first.body.db_server_id };
  }

  /** Where the allocation now is: the acknowledged writes missing there, and the data's rows. */
  async function readBack(moved: { ids: Ids; writer: ReturnType<typeof writer> }) {
    const now = await allocate(moved.ids);
    const c = client(now.body);
    await c.connect();
    const { rows } = await c.query<{ v: number }>('SELECT v FROM app.w');
    const { rows: big } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM app.big');
    await c.end();
    const have = new Set(rows.map((r) => r.v));
    return {
      allocation: now.body,
      missing: moved.writer.acked.filter((v) => !have.has(v)),
      bigRows: big[0]!.n,
    };
  }

  /** Every acknowledged write and all of the data where the allocation now is; that allocation. */
  async function verifyData(moved: { ids: Ids; writer: ReturnType<typeof writer> }) {
    const { allocation, missing, bigRows } = await readBack(moved);
    expect(missing).toEqual([]);
    expect(bigRows).toBe(BIG_ROWS);
    return allocation;
  }

  return {
    allocate,
    phaseOf,
    waitForPhase,
    seeded,
    readBack,
    verifyData,
    bigRows: BIG_ROWS,
    /**
     * A new tenant with data, a writer on it, and a move of it to another pool started: the
     * caller breaks something while it runs, then calls `verify` once the move is done.
     */
    async startMove() {
      const { ids, writer: w, sourceId } = await seeded();
      const target = await targetFor(sourceId);
      const started = await s.admin('POST', '/api/database/admin/moves', {
        instance_id: ids.instance_id,
        target_server_id: target.id,
      });
      expect(started.status).toBe(202);
      return { ids, writer: w, moveId: started.body.id as string, sourceId, target };
    },
    /** Served from the target, with every acknowledged write and all of the data. */
    async verify(moved: { ids: Ids; writer: ReturnType<typeof writer>; target: { id: string } }) {
      expect((await verifyData(moved)).db_server_id).toBe(moved.target.id);
    },
  };
}

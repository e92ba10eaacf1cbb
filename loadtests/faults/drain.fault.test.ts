// A drain under faults: a pool of tenants with data drained while the allocation load runs, every
// database-worker SIGKILLed once the drain is under way (moves begun, tenants left), both
// restarted. The drain must go on by itself (the drain-server job's retry, or reconcile queuing it
// again) and end with the pool drained: every tenant served from one other server with its data
// and its password, nothing left behind (the move invariants, and the drain invariant: a drained
// server holds no tenant, move or slot).
import { randomUUID } from 'node:crypto';
import { type TenantCredentials, tenantSsl } from '@tenantdb/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FaultStack, sleep, startFaultStack, waitUntil } from './stack';

const TENANTS = 6;
let s: FaultStack;
let poolId = '';

beforeAll(async () => {
  s = await startFaultStack({ TENANTDB_MOVE_GRACE_MS: '1000', TENANTDB_DRAIN_STEP_MS: '500' });
  await s.waitForCapacity(5);
  // Where the drained tenants go (the load's allocations too), and the pool to drain: first by
  // priority, exactly full with the tenants below, so the load never lands on it.
  const target = await s.admin('POST', '/api/database/admin/pools', { max_instances: 30, priority: 200 });
  expect(target.status).toBe(202);
  const source = await s.admin('POST', '/api/database/admin/pools', { max_instances: TENANTS, priority: 1 });
  expect(source.status).toBe(202);
  poolId = source.body.pool.id;
  await waitUntil(
    async () => (await s.servers()).filter((r) => r.status === 'active').length >= 3,
    180_000,
    'the two new pools',
  );
});
afterAll(async () => {
  await s?.close();
});

async function asTenant<T extends pg.QueryResultRow>(c: TenantCredentials, text: string): Promise<T[]> {
  const client = new pg.Client({
    host: c.db_host,
    port: c.db_port,
    database: c.db_name,
    user: c.db_user,
    password: c.db_password,
    ssl: tenantSsl(c),
    connectionTimeoutMillis: 5_000,
  });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

const drainOf = async () => (await s.admin('GET', `/api/database/admin/pools/${poolId}`)).body;

describe('a drain with every worker SIGKILLed while it runs', () => {
  it('completes after the restart: the pool drained, every tenant on one other server with its data', async () => {
    const tenants: {
      ids: { instance_id: string; customer_id: string; plan_tier: string };
      password: string;
    }[] = [];
    for (let i = 0; i < TENANTS; i++) {
      const ids = { instance_id: randomUUID(), customer_id: randomUUID(), plan_tier: 'standard' };
      const res = await s.allocate(ids);
      expect(res.status).toBe(200);
      expect(res.body.db_server_id).toBe(poolId);
      await asTenant(
        res.body,
        `CREATE SCHEMA app;
         CREATE TABLE app.t (id bigserial PRIMARY KEY, v text);
         INSERT INTO app.t (v) SELECT 'row-${i}-' || g FROM generate_series(1, 20000) g;`,
      );
      s.acknowledged.set(ids.instance_id, {
        instance_id: ids.instance_id,
        credentials: res.body,
        released: false,
      });
      tenants.push({ ids, password: res.body.db_password });
    }

    let killedWith = '';
    const report = await s.underLoad(
      {
        name: 'database-worker SIGKILL during a drain',
        injected: `a pool of ${TENANTS} tenants draining; both workers SIGKILLed once moves are under way, restarted`,
      },
      async () => {
        const started = await s.admin('POST', `/api/database/admin/pools/${poolId}/drain`);
        expect(started.status).toBe(200);
        await waitUntil(
          async () => {
            const d = (await drainOf()).drain;
            return d.moves_running > 0 && d.tenants_left > 0;
          },
          120_000,
          'moves of the drain under way',
        );
        killedWith = JSON.stringify((await drainOf()).drain);
        await s.workers.kill();
        await sleep(500);
        await s.workers.start();
        let last = '';
        await waitUntil(
          async () => {
            const d = await drainOf();
            last = JSON.stringify(d.drain);
            return d.status === 'drained';
          },
          300_000,
          `the pool to be drained after the restart (last ${last})`,
        );
      },
    );
    console.log(`drain SIGKILLed at ${killedWith}`);
    expect(report.violations).toEqual([]);

    const pool = await drainOf();
    expect(pool).toMatchObject({ status: 'drained', current_instances: 0 });
    expect(pool.drain).toMatchObject({ tenants_left: 0, warm_left: 0, moves_running: 0, blocked: [] });
    for (const [i, t] of tenants.entries()) {
      const now = await s.allocate(t.ids);
      expect(now.status).toBe(200);
      expect(now.body.db_server_id).not.toBe(poolId);
      expect(now.body.db_password).toBe(t.password);
      const [row] = await asTenant<{ n: number; first: string }>(
        now.body,
        'SELECT count(*)::int AS n, min(v) AS first FROM app.t',
      );
      expect(row).toEqual({ n: 20000, first: `row-${i}-1` });
    }
  });
});

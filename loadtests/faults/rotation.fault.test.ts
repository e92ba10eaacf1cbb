// database-service killed in the middle of credential rotations, under load. Two allocations are
// rotated while a transaction on their pool server holds their roles (so each rotation's ALTER
// ROLE waits there), then database-service is SIGKILLed: one ALTER ROLE is ended with it (the role
// keeps the old password), the other goes through after the kill (the role has the new password,
// the catalog never heard of it — before rotations stored a pending password, every later answer
// handed out one that no longer logged in). After a restart and one reconcile run, every ready
// allocation's catalog password logs in and the credentials read answers working ones.
import { randomUUID } from 'node:crypto';
import { canLogin } from '@tenantdb/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FaultStack, startFaultStack, waitUntil } from './stack';

let s: FaultStack;
beforeAll(async () => {
  s = await startFaultStack();
  await s.waitForCapacity(5);
});
afterAll(async () => {
  await s?.close();
});

async function api(method: 'GET' | 'POST', path: string, body?: unknown) {
  const res = await fetch(`${s.stack.urls.databaseService}/api/database${path}`, {
    method,
    headers: {
      authorization: `Bearer ${s.stack.secrets.allocateToken}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  // biome-ignore lint/suspicious/noExplicitAny: a parsed JSON body, read field by field
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as any };
}

async function allocated() {
  const ids = { instance_id: randomUUID(), customer_id: randomUUID(), plan_tier: 'standard' };
  const deadline = Date.now() + 60_000;
  for (;;) {
    const res = await api('POST', '/allocate', ids);
    if (res.status === 200) return { ids, credentials: res.body };
    if (res.status !== 202 || Date.now() > deadline)
      throw new Error(`allocate answered ${res.status}: ${JSON.stringify(res.body)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe('database-service killed mid-rotation, under load', () => {
  it('every ready allocation logs in with the password the catalog answers, once reconcile has run', async () => {
    const tenants: Awaited<ReturnType<typeof allocated>>[] = [];
    const report = await s.underLoad(
      {
        name: 'database-service SIGKILL mid-rotation',
        injected:
          'two rotations held at their ALTER ROLE on the pool server, SIGKILL; one ALTER ROLE ended with it, the other applied after; restarted',
      },
      async () => {
        // Two allocations on one pool (the first pool with room takes both: pack).
        tenants.push(await allocated(), await allocated());
        const [a, b] = tenants as [(typeof tenants)[0], (typeof tenants)[0]];
        expect(b.credentials.db_server_id).toBe(a.credentials.db_server_id);
        const server = (await s.servers()).find((r) => r.id === a.credentials.db_server_id)!;
        const admin = new pg.Client({
          host: server.host!,
          port: server.port!,
          user: server.admin_user!,
          password: s.secrets.decrypt(server.admin_password_enc!, server.id),
          database: server.admin_database,
        });
        await admin.connect();
        try {
          await admin.query('BEGIN');
          for (const t of tenants)
            await admin.query(`ALTER ROLE "${t.credentials.db_user}" CONNECTION LIMIT 5`);
          const rotations = tenants.map((t) =>
            api('POST', `/allocations/${t.ids.instance_id}/rotate-credentials`).catch(() => undefined),
          );
          const blocked = async () => {
            const check = new pg.Client({
              host: server.host!,
              port: server.port!,
              user: server.admin_user!,
              password: s.secrets.decrypt(server.admin_password_enc!, server.id),
              database: server.admin_database,
            });
            await check.connect();
            try {
              return (
                await check.query<{ pid: number; query: string }>(
                  `SELECT pid, query FROM pg_stat_activity
                    WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER ROLE %PASSWORD%'`,
                )
              ).rows;
            } finally {
              await check.end();
            }
          };
          await waitUntil(async () => (await blocked()).length === 2, 30_000, 'both rotations at ALTER ROLE');
          await s.stack.process('database-service').stop('SIGKILL');
          await Promise.all(rotations);
          // b's ALTER ROLE dies with the process; a's waits on and goes through once the lock goes.
          const forB = (await blocked()).find((r) => r.query.includes(`"${b.credentials.db_user}"`))!;
          await admin.query('SELECT pg_terminate_backend($1)', [forB.pid]);
          // Rolled back: a committed change to the role would fail the waiter ("tuple concurrently updated").
          await admin.query('ROLLBACK');
          await waitUntil(
            async () => (await blocked()).length === 0,
            30_000,
            'the held ALTER ROLE to finish',
          );
        } finally {
          await admin.end();
        }
        expect(await canLogin(a.credentials)).toBe(false); // the server has a's new password
        expect(await canLogin(b.credentials)).toBe(true); // b's role kept the old one
        await s.stack.process('database-service').start();
        // Until reconcile settles them, neither is answered with a password that may not work.
        for (const t of tenants) {
          const read = await api('GET', `/allocations/${t.ids.instance_id}/credentials`);
          if (read.status === 200) expect(await canLogin(read.body)).toBe(true);
          else expect(read.status).toBe(503);
        }
      },
    );
    expect(report.violations).toEqual([]);
    for (const t of tenants) {
      const read = await api('GET', `/allocations/${t.ids.instance_id}/credentials`);
      expect(read.status).toBe(200);
      expect(await canLogin(read.body)).toBe(true);
    }
  });
});

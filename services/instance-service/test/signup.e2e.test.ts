// Show 1 and 3 of issue #5, end to end through instance-service with `pnpm dev`'s own wiring
// (real processes: database-service, instance-service, two workers, the local driver): 20 signups
// at once on an empty fleet with small pools all become ready, with new pools provisioned on the
// way; every credential logs in to its own database only; 10 deletions drop databases and roles
// on the servers and free the slots. The callback receiver gets exactly one accepted, signed POST
// per instance although it answered 500 the first time.
import { InstanceCallback } from '@tenantdb/contracts';
import { type CallbackReceiver, startCallbackReceiver } from '@tenantdb/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { verifyCallback } from '../src/callbacks/signature';
import { type E2EStack, sleep, startE2EStack } from './e2e-stack';
import { canLogin, newInstance, signedWith } from './harness';

let e: E2EStack;
let hooks: CallbackReceiver;
beforeAll(async () => {
  e = await startE2EStack({ TENANTDB_POOL_MAX_INSTANCES: '8', TENANTDB_SHARED_HEADROOM: '1' });
  hooks = await startCallbackReceiver({ answers: [{ status: 500 }], secret: e.stack.secrets.callbackSecret });
});
afterAll(async () => {
  await e?.close();
  await hooks?.close();
});

it('20 signups at once → all ready on new pools; credentials log in to their own database only; 10 deleted → gone on the servers, slots freed; one signed callback each', {
  timeout: 150_000,
}, async () => {
  const burstStarted = new Date();
  const bodies = Array.from({ length: 20 }, () => newInstance({ callback_url: hooks.url }));
  const created = await Promise.all(
    bodies.map((body, i) =>
      e.api('POST', '/api/v1/instances', body, { 'idempotency-key': `signup-${i}-${body.customer_id}` }),
    ),
  );
  expect(created.map((c) => c.status)).toEqual(Array(20).fill(202));
  expect(created.every((c) => c.body.status === 'pending')).toBe(true);
  const instances = created.map((c, i) => ({ id: c.body.id as string, customer: bodies[i]!.customer_id }));

  const ready = await Promise.all(
    instances.map((i) => e.waitForStatus(i.id, i.customer, ['ready', 'failed'], 120_000)),
  );
  expect(ready.filter((r) => r.status !== 'ready').map((r) => r.error)).toEqual([]);

  // 20 tenants on pools of 8: at least three pools, and some made after the burst began.
  const servers = await e.servers();
  const shared = servers.filter((s) => s.server_type === 'shared');
  expect(shared.length).toBeGreaterThanOrEqual(3);
  expect(shared.filter((s) => s.created_at >= burstStarted).length).toBeGreaterThanOrEqual(1);
  expect(shared.reduce((n, s) => n + s.current_instances, 0)).toBe(20);
  for (const s of shared) expect(s.current_instances).toBeLessThanOrEqual(8);
  expect(
    new Set(ready.map((r) => r.db_server_id ?? `${r.db_host}:${r.db_port}`)).size,
  ).toBeGreaterThanOrEqual(3);

  const creds: {
    db_host: string;
    db_port: number;
    db_name: string;
    db_user: string;
    db_password: string;
  }[] = [];
  for (const i of instances) {
    const res = await e.api('POST', `/api/v1/instances/${i.id}/credentials?customer_id=${i.customer}`);
    expect(res.status).toBe(200);
    creds.push(res.body);
  }
  expect(new Set(creds.map((c) => c.db_name)).size).toBe(20);
  for (const [n, c] of creds.entries()) {
    expect(await canLogin(c)).toBe(true);
    // Not into another tenant's database on the same server, nor the server's system database.
    const neighbour = creds.find((o, m) => m !== n && o.db_host === c.db_host && o.db_port === c.db_port);
    if (neighbour) expect(await canLogin({ ...c, db_name: neighbour.db_name })).toBe(false);
    expect(await canLogin({ ...c, db_name: 'postgres' })).toBe(false);
  }
  expect(creds.some((c) => creds.some((o) => o !== c && o.db_port === c.db_port))).toBe(true);

  // Callbacks: every instance's receiver saw [500, 200] with the same signed body, nothing more.
  const deadline = Date.now() + 30_000;
  while (!instances.every((i) => hooks.for(i.id).some((r) => r.answered === 200))) {
    if (Date.now() > deadline) throw new Error('callbacks not all delivered');
    await sleep(200);
  }

  // Delete half.
  const doomed = instances.slice(0, 10);
  const kept = instances.slice(10);
  const deleted = await Promise.all(
    doomed.map((i) => e.api('DELETE', `/api/v1/instances/${i.id}?customer_id=${i.customer}`)),
  );
  expect(deleted.map((d) => d.status).every((s) => s === 200 || s === 202)).toBe(true);
  for (const i of doomed) await e.waitForStatus(i.id, i.customer, ['deleted'], 30_000);

  const after = await e.servers();
  expect(after.filter((s) => s.server_type === 'shared').reduce((n, s) => n + s.current_instances, 0)).toBe(
    10,
  );
  const byPort = new Map(after.map((s) => [s.port, s]));
  for (const [n, c] of creds.entries()) {
    const server = byPort.get(c.db_port)!;
    const dbs = await e.asAdmin(server, 'SELECT 1 FROM pg_database WHERE datname = $1', [c.db_name]);
    const roles = await e.asAdmin(server, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [c.db_user]);
    const gone = n < 10;
    expect(dbs.length, `database of instance ${n}`).toBe(gone ? 0 : 1);
    expect(roles.length, `role of instance ${n}`).toBe(gone ? 0 : 1);
    expect(await canLogin(c)).toBe(!gone);
  }
  for (const i of doomed) {
    const allocation = await e.databaseService('GET', `/api/database/allocations/${i.id}`);
    expect(allocation.body.status).toBe('released');
  }
  for (const i of kept) {
    const res = await e.api('GET', `/api/v1/instances/${i.id}?customer_id=${i.customer}`);
    expect(res.body.status).toBe('ready');
  }

  await sleep(2_000); // room for a wrong second delivery
  for (const i of instances) {
    const requests = hooks.for(i.id);
    expect(requests.map((r) => r.answered)).toEqual([500, 200]);
    for (const r of requests) {
      expect(verifyCallback(e.stack.secrets.callbackSecret, r.body, signedWith(r))).toBe(true);
      expect(r.body).toBe(requests[0]!.body);
    }
    const payload = InstanceCallback.parse(JSON.parse(requests[1]!.body));
    expect(payload).toMatchObject({
      event: 'instance.ready',
      instance: { id: i.id, customer_id: i.customer, status: 'ready' },
    });
  }
});

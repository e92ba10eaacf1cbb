// Faults of the platform's own processes, each under load on one stack: a worker SIGKILLed in the
// middle of provision-server, database-service SIGKILLed and restarted, duplicate requests and
// replays, and SIGTERM (a clean drain) of database-service and of a worker mid-job.
import { randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { createLocalProvisioner } from '@tenantdb/provisioners';
import { canLogin } from '@tenantdb/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Acknowledged } from './invariants';
import { type FaultStack, sleep, startFaultStack, waitUntil } from './stack';

let s: FaultStack;
beforeAll(async () => {
  s = await startFaultStack();
  await s.waitForCapacity(5);
});
afterAll(async () => {
  await s?.close();
});

const worker = (n: 1 | 2) => s.stack.process(`database-worker-${n}`);
const databaseService = () => s.stack.process('database-service');

/** Asks for a new shared pool; resolves once the local driver has started making it. */
async function poolBeingCreated() {
  const res = await s.admin('POST', '/api/database/admin/pools', { max_instances: 10 });
  expect(res.status).toBe(202);
  const pool = res.body.pool as { id: string; name: string };
  await waitUntil(
    async () => (await readdir(s.stack.serverRoot)).includes(pool.name),
    60_000,
    'the local driver to start creating the pool',
  );
  return pool;
}

async function settledPool(id: string) {
  await waitUntil(
    async () => ['active', 'error'].includes((await s.servers()).find((r) => r.id === id)?.status ?? ''),
    120_000,
    'the pool to be active or given up',
  );
  return (await s.servers()).find((r) => r.id === id)!;
}

describe('faults of the platform processes, under load', () => {
  it('a worker SIGKILLed in the middle of provision-server: the other replicas finish it, once', async () => {
    let poolId = '';
    const report = await s.underLoad(
      {
        name: 'database-worker SIGKILL mid-job',
        injected:
          'one replica left running, a pool requested, SIGKILL once the driver has begun creating it; both replicas started again',
      },
      async () => {
        await worker(2).stop(); // the job can only go to worker 1
        const pool = await poolBeingCreated();
        poolId = pool.id;
        await worker(1).stop('SIGKILL');
        await Promise.all([worker(1).start(), worker(2).start()]);
        const row = await settledPool(pool.id);
        expect(row.status).toBe('active');
      },
    );
    expect(report.violations).toEqual([]);
    // Exactly one server object for the row: the retry adopted the half-made one.
    const objects = await createLocalProvisioner({ root: s.stack.serverRoot }).list();
    expect(objects.filter((o) => o.serverId === poolId)).toHaveLength(1);
  });

  it('database-service SIGKILLed under load and restarted: nothing half-made survives the reconciler', async () => {
    const report = await s.underLoad(
      {
        name: 'database-service SIGKILL',
        injected: 'SIGKILL while 2 clients allocate and release; restarted (a fresh process serves on)',
      },
      async (load) => {
        await load.progress(2);
        await databaseService().stop('SIGKILL');
        await sleep(1_000);
        await databaseService().start();
      },
    );
    expect(report.violations).toEqual([]);
  });

  it('duplicate requests and replays: one database per instance, the same credentials every time', async () => {
    const extra: Acknowledged[] = [];
    const report = await s.underLoad(
      {
        name: 'duplicate requests and replays',
        injected:
          'allocate ×4 concurrently per instance and replayed, release ×3 concurrently and replayed; instance-service create ×4 with one Idempotency-Key',
      },
      async () => {
        for (let i = 0; i < 4; i++) {
          const ids = { instance_id: randomUUID(), customer_id: randomUUID(), plan_tier: 'standard' };
          const answers = await Promise.all([1, 2, 3, 4].map(() => allocateUntil200(ids)));
          for (const a of answers) expect(a).toEqual(answers[0]);
          expect(await allocateUntil200(ids)).toEqual(answers[0]); // a replay, later
          expect(await canLogin(answers[0]!)).toBe(true);
          const rows = await s.db
            .selectFrom('tenant_databases')
            .select('id')
            .where('instance_id', '=', ids.instance_id)
            .execute();
          expect(rows).toHaveLength(1);
          // Concurrent releases: one does it; the others answer 200 or 409 "being released" (documented).
          const releases = await Promise.all([1, 2, 3].map(() => call('DELETE', ids.instance_id)));
          expect(releases.filter((r) => r.status === 200).length).toBeGreaterThan(0);
          for (const r of releases) expect([200, 409]).toContain(r.status);
          expect((await call('DELETE', ids.instance_id)).status).toBe(200);
          expect(await canLogin(answers[0]!)).toBe(false);
          extra.push({ instance_id: ids.instance_id, credentials: answers[0]!, released: true });
        }
        // instance-service: one instance for one Idempotency-Key, however many times it is sent.
        const key = `fault-${randomUUID()}`;
        const body = { customer_id: randomUUID(), name: 'replayed', plan_tier: 'standard' };
        const created = await Promise.all(
          [1, 2, 3, 4].map(() => portal('POST', '/api/v1/instances', body, key)),
        );
        for (const c of created) expect(c.status).toBe(202);
        const id = created[0]!.body.id as string;
        for (const c of created) expect(c.body.id).toBe(id);
        expect((await portal('POST', '/api/v1/instances', { ...body, name: 'other' }, key)).status).toBe(422);
        await waitUntil(
          async () =>
            (await portal('GET', `/api/v1/instances/${id}?customer_id=${body.customer_id}`)).body.status ===
            'ready',
          60_000,
          'the replayed instance to be ready',
        );
        const creds = await portal(
          'POST',
          `/api/v1/instances/${id}/credentials?customer_id=${body.customer_id}`,
        );
        expect(creds.status).toBe(200);
        s.knownSecrets.add(creds.body.db_password);
        expect(await canLogin(creds.body)).toBe(true);
        const alloc = await s.db
          .selectFrom('tenant_databases')
          .select(['db_server_id', 'status'])
          .where('instance_id', '=', id)
          .execute();
        expect(alloc).toHaveLength(1);
        extra.push({
          instance_id: id,
          credentials: { ...creds.body, db_server_id: alloc[0]!.db_server_id },
          released: false,
        });
      },
    );
    expect(report.violations).toEqual([]);
    for (const a of extra) s.acknowledged.set(a.instance_id, a);
    expect((await s.check()).violations).toEqual([]);
  });

  it('SIGTERM during load: database-service drains its requests, a worker finishes its job, nothing runs twice', async () => {
    const since = { service: 0, worker: 0 };
    const started = new Date();
    let poolId = '';
    const report = await s.underLoad(
      {
        name: 'SIGTERM during load (drain)',
        injected:
          'SIGTERM to database-service with requests in flight, and to a worker mid provision-server; both started again',
      },
      async (load) => {
        await load.progress(2);
        since.service = s.output('database-service').length;
        await databaseService().stop('SIGTERM');
        // Every request it had taken was answered before it exited: no row is left half-made.
        const halfMade = await s.db
          .selectFrom('tenant_databases')
          .select(['instance_id', 'status'])
          .where('status', 'in', ['creating', 'releasing'])
          .execute();
        expect(halfMade).toEqual([]);
        const serviceLog = s.output('database-service').slice(since.service);
        expect(serviceLog).toMatch(/"msg":"shutdown complete"/);
        expect(serviceLog).toMatch(/"failed":false/);
        await databaseService().start();

        await worker(2).stop();
        const pool = await poolBeingCreated();
        poolId = pool.id;
        since.worker = s.output('database-worker-1').length;
        await worker(1).stop('SIGTERM');
        const workerLog = s.output('database-worker-1').slice(since.worker);
        // It finished the job in hand (within the deadline) rather than leaving it to a retry.
        expect(workerLog).not.toMatch(/jobs still running at the deadline/);
        expect(workerLog).toMatch(new RegExp(`"db_server_id":"${pool.id}"[^\\n]*"msg":"server active"`));
        expect((await s.servers()).find((r) => r.id === pool.id)?.status).toBe('active');
        await Promise.all([worker(1).start(), worker(2).start()]);
      },
    );
    expect(report.violations).toEqual([]);
    // Nothing processed twice: no instance got a second database during this fault, no pool was
    // activated twice.
    const twice = await s.db
      .selectFrom('tenant_databases')
      .select(['instance_id', (eb) => eb.fn.countAll<string>().as('n')])
      .where('instance_id', 'is not', null)
      .where('created_at', '>=', started)
      .groupBy('instance_id')
      .having((eb) => eb.fn.countAll(), '>', 1)
      .execute();
    expect(twice).toEqual([]);
    const activations = [1, 2]
      .map((n) => s.output(`database-worker-${n}`))
      .join('\n')
      .split('\n')
      .filter((l) => l.includes(`"db_server_id":"${poolId}"`) && l.includes('"msg":"server active"'));
    expect(activations).toHaveLength(1);
  });
});

async function call(method: 'POST' | 'DELETE', instanceId: string, body?: unknown) {
  const res = await fetch(
    `${s.stack.urls.databaseService}/api/database/${method === 'POST' ? 'allocate' : `allocations/${instanceId}`}`,
    {
      method,
      headers: {
        authorization: `Bearer ${s.stack.secrets.allocateToken}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    },
  );
  // biome-ignore lint/suspicious/noExplicitAny: a parsed JSON body, read field by field
  return { status: res.status, body: (await res.json()) as any };
}

async function allocateUntil200(ids: { instance_id: string; customer_id: string; plan_tier: string }) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const res = await call('POST', ids.instance_id, ids);
    if (res.status === 200) {
      const { db_server_id, db_host, db_port, db_name, db_user, db_password, sslmode, ssl_root_cert } =
        res.body;
      return { db_server_id, db_host, db_port, db_name, db_user, db_password, sslmode, ssl_root_cert };
    }
    if (res.status !== 202 || Date.now() > deadline)
      throw new Error(`allocate answered ${res.status}: ${JSON.stringify(res.body)}`);
    await sleep(500);
  }
}

async function portal(method: 'GET' | 'POST', path: string, body?: unknown, idempotencyKey?: string) {
  const res = await fetch(`${s.stack.urls.instanceService}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${s.stack.secrets.portalToken}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
      ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}),
    },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  // biome-ignore lint/suspicious/noExplicitAny: a parsed JSON body, read field by field
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as any };
}

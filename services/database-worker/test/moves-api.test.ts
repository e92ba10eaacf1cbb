// The moves API against a real fleet: every refusal is a clear 4xx that changes nothing (no move
// recorded, no slot taken), "anywhere" follows the placement rules, and a move in flight refuses a
// rotation and a release of its tenant (409) until it is done.
import { randomUUID } from 'node:crypto';
import type { DbServer } from '@tenantdb/catalog';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fleet, newIds, startFleet } from './harness';
import { allocate, asTenant, makePool, slotsOf, waitForPhase } from './moves-kit';

let f: Fleet;
let a: DbServer;
let b: DbServer;

beforeAll(async () => {
  f = await startFleet({
    replicas: 1,
    env: { TENANTDB_MOVE_GRACE_MS: '1000', TENANTDB_MOVES_PER_SERVER: '3' },
  });
  a = await makePool(f, { name: 'api-a', priority: 10 });
  b = await makePool(f, { name: 'api-b', priority: 20 });
}, 180_000);

afterAll(async () => {
  await f?.close();
}, 120_000);

const post = (url: string, body: unknown, token = f.adminToken) => f.api('POST', url, body, token);
const movesRecorded = async () =>
  Number(
    (
      await f.db
        .selectFrom('tenant_moves')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );

async function fakeServer(patch: Record<string, unknown>): Promise<string> {
  // b's admin password, encrypted for this row (a ciphertext is bound to the row that holds it)
  const id = randomUUID();
  await f.db
    .insertInto('db_servers')
    .values({
      id,
      name: `fake-${Math.random().toString(36).slice(2, 8)}`,
      driver: 'external',
      host: b.host,
      port: b.port,
      server_type: 'shared',
      max_instances: 5,
      admin_user: b.admin_user,
      admin_password_enc: f.secrets.encrypt(f.adminPassword(b), id),
      status: 'active',
      ...patch,
    } as never)
    .execute();
  return id;
}

describe('refusals: a clear 4xx, nothing changed', () => {
  it('bad bodies, unknown ids, the same server, and targets that cannot take the tenant', async () => {
    const { ids } = await allocate(f, newIds('standard'));
    const before = { moves: await movesRecorded(), a: await slotsOf(f, a.id), b: await slotsOf(f, b.id) };
    const url = '/api/database/admin/moves';
    const refused: [unknown, number, RegExp?][] = [
      [{}, 400],
      [{ instance_id: 'not-a-uuid' }, 400],
      [{ instance_id: ids.instance_id, extra: 1 }, 400],
      [{ instance_id: crypto.randomUUID() }, 404, /no live allocation/],
      [{ instance_id: ids.instance_id, target_server_id: crypto.randomUUID() }, 404, /no server/],
      [{ instance_id: ids.instance_id, target_server_id: a.id }, 400, /already on this server/],
      [
        { instance_id: ids.instance_id, target_server_id: await fakeServer({ status: 'cordoned' }) },
        409,
        /cordoned/,
      ],
      [
        { instance_id: ids.instance_id, target_server_id: await fakeServer({ status: 'draining' }) },
        409,
        /draining/,
      ],
      [
        { instance_id: ids.instance_id, target_server_id: await fakeServer({ health_status: 'unhealthy' }) },
        409,
        /unhealthy/,
      ],
      [
        {
          instance_id: ids.instance_id,
          target_server_id: await fakeServer({ max_instances: 1, current_instances: 1 }),
        },
        409,
        /no room/,
      ],
      [
        {
          instance_id: ids.instance_id,
          target_server_id: await fakeServer({
            server_type: 'dedicated',
            dedicated_to_customer_id: crypto.randomUUID(),
            dedicated_to_instance_id: crypto.randomUUID(),
          }),
        },
        409,
        /another customer/,
      ],
      [
        { instance_id: ids.instance_id, target_server_id: await fakeServer({ server_type: 'platform' }) },
        409,
        /platform/,
      ],
    ];
    for (const [body, status, message] of refused) {
      const res = await post(url, body);
      expect({ body, status: res.status }).toEqual({ body, status });
      expect(res.body.statusCode).toBe(status);
      if (message) expect(res.body.message).toMatch(message);
    }
    // Without the admin scope.
    expect((await post(url, { instance_id: ids.instance_id }, f.allocateToken)).status).toBe(403);
    expect((await f.api('GET', `${url}/${crypto.randomUUID()}`, undefined, f.adminToken)).status).toBe(404);
    expect((await post(`${url}/${crypto.randomUUID()}/cancel`, {})).status).toBe(404);
    expect({ moves: await movesRecorded(), a: await slotsOf(f, a.id), b: await slotsOf(f, b.id) }).toEqual(
      before,
    );
  }, 60_000);
});

describe('a move in flight', () => {
  it('goes anywhere with room; refuses a second move, a rotation and a release of its tenant until it is done', async () => {
    const { ids, creds } = await allocate(f, newIds('standard'));
    expect(creds.db_server_id).toBe(a.id);
    await asTenant(
      creds,
      `CREATE SCHEMA app;
       CREATE TABLE app.big (id bigserial PRIMARY KEY, v text);
       INSERT INTO app.big (v) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 150000) g;`,
    );
    // No target: the only other placeable pool.
    const started = await post('/api/database/admin/moves', { instance_id: ids.instance_id });
    expect(started.status).toBe(202);
    expect(started.body.target_server_id).toBe(b.id);
    const id = started.body.id as string;

    const second = await post('/api/database/admin/moves', { instance_id: ids.instance_id });
    expect(second.status).toBe(409);
    expect(second.body.message).toMatch(/already under way/);
    const rotate = await post(
      `/api/database/allocations/${ids.instance_id}/rotate-credentials`,
      {},
      f.allocateToken,
    );
    expect(rotate.status).toBe(409);
    expect(rotate.body.message).toMatch(/being moved/);
    const release = await f.api(
      'DELETE',
      `/api/database/allocations/${ids.instance_id}`,
      undefined,
      f.allocateToken,
    );
    expect(release.status).toBe(409);

    const listed = await f.api(
      'GET',
      `/api/database/admin/moves?instance_id=${ids.instance_id}`,
      undefined,
      f.adminToken,
    );
    expect(listed.body.moves.map((m: { id: string }) => m.id)).toEqual([id]);
    const byServer = await f.api(
      'GET',
      `/api/database/admin/moves?server_id=${b.id}`,
      undefined,
      f.adminToken,
    );
    expect(byServer.body.moves.some((m: { id: string }) => m.id === id)).toBe(true);

    await waitForPhase(f, id, ['grace', 'dropping_source', 'done']);
    // Cut over: not cancellable any more; the tenant is the target's like any other.
    const late = await post(`/api/database/admin/moves/${id}/cancel`, {});
    expect(late.status).toBe(409);
    const rotated = await post(
      `/api/database/allocations/${ids.instance_id}/rotate-credentials`,
      {},
      f.allocateToken,
    );
    expect(rotated.status).toBe(200);
    expect(rotated.body.db_port).toBe(b.port);
    await waitForPhase(f, id, ['done'], 60_000);
    const released = await f.api(
      'DELETE',
      `/api/database/allocations/${ids.instance_id}`,
      undefined,
      f.allocateToken,
    );
    expect([200, 204]).toContain(released.status);
    expect(await slotsOf(f, b.id)).toBe(0);
  }, 120_000);
});

// Tenant moves with real servers (local driver, PostgreSQL 15 by default and 17), a real worker and
// database-service: logical replication under continuous writes, the dump path, across majors,
// cancel. Refusals (4xx) are moves-api.test.ts.
import type { DbServer } from '@tenantdb/catalog';
import { canLogin } from '@tenantdb/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asAdmin, type Fleet, newIds, startFleet, waitFor } from './harness';
import { fleetRepoSlotDrift } from './moves-drift';
import { allocate, asTenant, makePool, moveOf, slotsOf, startWriter, waitForPhase } from './moves-kit';

let f: Fleet;
let a: DbServer;
let b: DbServer;

beforeAll(async () => {
  f = await startFleet({ replicas: 1, env: { TENANTDB_MOVE_GRACE_MS: '3000' } });
  a = await makePool(f, { name: 'moves-a', priority: 10 });
  b = await makePool(f, { name: 'moves-b', priority: 20 });
}, 180_000);

afterAll(async () => {
  await f?.close();
}, 120_000);

const adminPost = (url: string, body: unknown) => f.api('POST', url, body, f.adminToken);

describe('a tenant move by logical replication', () => {
  it('moves tables, indexes, sequences, a view and data while a client writes; every acknowledged write arrives', async () => {
    const { ids, creds } = await allocate(f, newIds('standard'));
    expect(creds.db_server_id).toBe(a.id);
    // In a schema of its own: the tenant role is NOINHERIT, so it does not get pg_database_owner's
    // CREATE on public (PostgreSQL 15+); as the database's owner it may create schemas.
    await asTenant(
      creds,
      `
      CREATE SCHEMA app;
      SET search_path = app;
      CREATE TABLE items (id bigserial PRIMARY KEY, v integer NOT NULL, note text, at timestamptz DEFAULT now());
      CREATE INDEX items_v ON items (v);
      CREATE TABLE notes (id integer PRIMARY KEY, item_id bigint REFERENCES items (id), body text);
      CREATE SEQUENCE ticket_seq START 1000;
      CREATE VIEW recent AS SELECT id, v FROM items ORDER BY id DESC LIMIT 10;
      INSERT INTO items (v, note) SELECT -g, repeat('x', 200) FROM generate_series(1, 20000) g;
      INSERT INTO notes SELECT g, g, 'n' FROM generate_series(1, 100) g;
      SELECT setval('ticket_seq', 1234);`,
    );
    const writer = startWriter(f, ids, 'app.items');
    await new Promise((r) => setTimeout(r, 500));

    const started = await adminPost('/api/database/admin/moves', {
      instance_id: ids.instance_id,
      target_server_id: b.id,
    });
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ phase: 'pending', source_server_id: a.id, target_server_id: b.id });
    const moveId = started.body.id as string;
    // Both slots are held from the start: the target's taken at once.
    expect(await slotsOf(f, b.id)).toBe(1);
    expect(await slotsOf(f, a.id)).toBe(1);

    const graced = await waitForPhase(f, moveId, ['grace', 'dropping_source', 'done']);
    await new Promise((r) => setTimeout(r, 500)); // a few writes on the target too
    await writer.stop();
    const stats = writer.stats();
    console.log(`logical move: ${JSON.stringify({ ...stats, write_blocked_ms: graced.write_blocked_ms })}`);
    expect(graced).toMatchObject({ method: 'logical' });
    expect(Number(graced.write_blocked_ms)).toBeGreaterThanOrEqual(0);

    // The allocation now answers the target's address, and the old password logs in there (TLS verify-full).
    const again = await f.api('POST', '/api/database/allocate', ids);
    expect(again.body).toMatchObject({ db_server_id: b.id, db_port: b.port, db_password: creds.db_password });
    expect(again.body.sslmode).toBe('verify-full');
    expect(await canLogin(again.body)).toBe(true);

    const target = again.body;
    const rows = await asTenant<{ v: number }>(target, 'SELECT v FROM app.items WHERE v > 0');
    const have = new Set(rows.map((r) => r.v));
    const missing = writer.acked.filter((v) => !have.has(v));
    expect(missing).toEqual([]);
    expect(writer.acked.length).toBeGreaterThan(20);
    const [counts] = await asTenant<{ old: number; notes: number }>(
      target,
      'SELECT (SELECT count(*)::int FROM app.items WHERE v < 0) AS old, (SELECT count(*)::int FROM app.notes) AS notes',
    );
    expect(counts).toEqual({ old: 20000, notes: 100 });
    // Sequences go on without collision; the view and the indexes are there.
    const [seq] = await asTenant<{ ticket: string; max: string; next: string }>(
      target,
      "SELECT nextval('app.ticket_seq')::text AS ticket, (SELECT max(id) FROM app.items)::text AS max, nextval('app.items_id_seq')::text AS next",
    );
    expect(Number(seq!.ticket)).toBe(1235);
    expect(Number(seq!.next)).toBeGreaterThan(Number(seq!.max));
    await asTenant(target, 'INSERT INTO app.items (v) VALUES (0)');
    expect((await asTenant(target, 'SELECT * FROM app.recent')).length).toBe(10);
    const indexes = await asTenant<{ indexname: string }>(
      target,
      "SELECT indexname FROM pg_indexes WHERE schemaname = 'app' ORDER BY 1",
    );
    expect(indexes.map((i) => i.indexname)).toEqual(['items_pkey', 'items_v', 'notes_pkey']);

    // The source is closed (no login), still there for its grace period; both slots held.
    const sourceNow = (await f.servers()).find((s) => s.id === a.id)!;
    if ((await moveOf(f, moveId)).phase === 'grace') {
      const [role] = await asAdmin<{ login: boolean }>(
        f,
        sourceNow,
        `SELECT rolcanlogin AS login FROM pg_roles WHERE rolname = '${creds.db_user}'`,
      );
      expect(role?.login).toBe(false);
      expect(await canLogin(creds)).toBe(false);
      expect(await slotsOf(f, a.id)).toBe(1);
    }
    expect(await slotsOf(f, b.id)).toBe(1);

    // Then it is dropped and its slot freed; nothing of the move is left on either server.
    await waitForPhase(f, moveId, ['done'], 60_000);
    expect(await slotsOf(f, a.id)).toBe(0);
    expect(await slotsOf(f, b.id)).toBe(1);
    expect(await fleetRepoSlotDrift(f)).toBe(0);
    const onSource = await asAdmin<{ dbs: number; slots: number; roles: number }>(
      f,
      sourceNow,
      `SELECT (SELECT count(*)::int FROM pg_database WHERE datname = '${creds.db_name}') AS dbs,
              (SELECT count(*)::int FROM pg_replication_slots) AS slots,
              (SELECT count(*)::int FROM pg_roles WHERE rolname LIKE 'tenantdb_move_%' OR rolname = '${creds.db_user}') AS roles`,
    );
    expect(onSource[0]).toEqual({ dbs: 0, slots: 0, roles: 0 });
    const targetServer = (await f.servers()).find((s) => s.id === b.id)!;
    const [subs] = await asAdmin<{ n: number }>(
      f,
      targetServer,
      'SELECT count(*)::int AS n FROM pg_subscription',
    );
    expect(subs!.n).toBe(0);

    // The worker's metrics saw it: the result, the phases, the bytes and the write-blocked time.
    const metrics = (await f.workers[0]!.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/tenantdb_moves_total\{result="done",service="database-worker"\} 1/);
    expect(metrics).toMatch(/tenantdb_move_phases_total\{phase="cleaning_up",service="database-worker"\} 1/);
    expect(metrics).toMatch(/tenantdb_move_write_blocked_seconds_count\{service="database-worker"\} 1/);
    expect(
      Number(/tenantdb_move_bytes_copied_total\{service="database-worker"\} (\d+)/.exec(metrics)?.[1]),
    ).toBeGreaterThan(1_000_000);
  }, 180_000);
});

describe('other paths', () => {
  it('a table without a primary key takes the dump path, with writes blocked for the copy', async () => {
    const { ids, creds } = await allocate(f, newIds('standard'));
    await asTenant(
      creds,
      `CREATE SCHEMA app;
       CREATE TABLE app.events (at timestamptz DEFAULT now(), body text);
       CREATE TABLE app.keyed (id serial PRIMARY KEY, n int);
       INSERT INTO app.events (body) SELECT 'e' || g FROM generate_series(1, 3000) g;
       INSERT INTO app.keyed (n) SELECT g FROM generate_series(1, 50) g;`,
    );
    const started = await adminPost('/api/database/admin/moves', {
      instance_id: ids.instance_id,
      target_server_id: b.id,
    });
    expect(started.status).toBe(202);
    const moved = await waitForPhase(f, started.body.id, ['grace', 'dropping_source', 'done']);
    expect(moved).toMatchObject({ method: 'dump' });
    expect(Number(moved.write_blocked_ms)).toBeGreaterThan(0);
    expect(String(moved.method_reason)).toMatch(/without a primary key.*app\.events/);
    const target = (await f.api('POST', '/api/database/allocate', ids)).body;
    expect(target.db_server_id).toBe(b.id);
    const [n] = await asTenant<{ events: number; next: number }>(
      target,
      "SELECT (SELECT count(*)::int FROM app.events) AS events, nextval('app.keyed_id_seq')::int AS next",
    );
    expect(n).toEqual({ events: 3000, next: 51 });
  }, 120_000);

  it('moves a tenant from a PostgreSQL 15 server to a 17 one, with its data, and it logs in there', async () => {
    const c = await makePool(f, { name: 'moves-c17', priority: 30, postgres_major: 17 });
    expect(c).toMatchObject({ postgres_major: 17, logical_replication: true });
    expect(a).toMatchObject({ postgres_major: 15, logical_replication: true });
    const { ids, creds } = await allocate(f, newIds('standard'));
    expect(creds.db_server_id).toBe(a.id);
    await asTenant(
      creds,
      `CREATE SCHEMA app;
       CREATE TABLE app.t (id bigserial PRIMARY KEY, v text);
       INSERT INTO app.t (v) SELECT md5(g::text) FROM generate_series(1, 5000) g;`,
    );
    const started = await adminPost('/api/database/admin/moves', {
      instance_id: ids.instance_id,
      target_server_id: c.id,
    });
    expect(started.status).toBe(202);
    const moved = await waitForPhase(f, started.body.id, ['grace', 'dropping_source', 'done']);
    expect(moved.method).toBe('logical');
    const target = (await f.api('POST', '/api/database/allocate', ids)).body;
    expect(target.db_port).toBe(c.port);
    const [row] = await asTenant<{ major: number; n: number }>(
      target,
      "SELECT current_setting('server_version_num')::int / 10000 AS major, (SELECT count(*)::int FROM app.t) AS n",
    );
    expect(row).toEqual({ major: 17, n: 5000 });
    // A move back to an older major is refused.
    const back = await adminPost('/api/database/admin/moves', {
      instance_id: ids.instance_id,
      target_server_id: a.id,
    });
    expect(back.status).toBe(409);
  }, 180_000);

  it('cancel before the cut-over undoes the target and frees its slot; the tenant stays where it was', async () => {
    const { ids, creds } = await allocate(f, newIds('standard'));
    expect(creds.db_server_id).toBe(a.id);
    await asTenant(
      creds,
      `CREATE SCHEMA app;
       CREATE TABLE app.big (id bigserial PRIMARY KEY, v text);
       INSERT INTO app.big (v) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 200000) g;`,
    );
    // The earlier tests' moves may still be in their grace period, and count towards the servers'
    // bound of moves (TENANTDB_MOVES_PER_SERVER, 2): a loaded CI host saw this one refused (409).
    await waitFor(
      async () =>
        (
          await f.db
            .selectFrom('tenant_moves')
            .select('id')
            .where('phase', 'not in', ['done', 'cancelled', 'failed'])
            .execute()
        ).length === 0,
      60_000,
      'the earlier moves to finish',
    );
    const bSlots = await slotsOf(f, b.id);
    const started = await adminPost('/api/database/admin/moves', {
      instance_id: ids.instance_id,
      target_server_id: b.id,
    });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    expect(await slotsOf(f, b.id)).toBe(bSlots + 1);
    const cancel = await adminPost(`/api/database/admin/moves/${started.body.id}/cancel`, {});
    expect(cancel.status).toBe(202);
    expect(cancel.body.phase).toBe('cancelling');
    const ended = await waitForPhase(f, started.body.id, ['cancelled'], 60_000);
    expect(ended.finished_at).not.toBeNull();
    expect(await slotsOf(f, b.id)).toBe(bSlots);
    const targetServer = (await f.servers()).find((s) => s.id === b.id)!;
    const [left] = await asAdmin<{ dbs: number; subs: number; roles: number }>(
      f,
      targetServer,
      `SELECT (SELECT count(*)::int FROM pg_database WHERE datname = '${creds.db_name}') AS dbs,
              (SELECT count(*)::int FROM pg_subscription) AS subs,
              (SELECT count(*)::int FROM pg_roles WHERE rolname = '${creds.db_user}') AS roles`,
    );
    expect(left).toEqual({ dbs: 0, subs: 0, roles: 0 });
    const sourceServer = (await f.servers()).find((s) => s.id === a.id)!;
    const [src] = await asAdmin<{ slots: number; moveRoles: number }>(
      f,
      sourceServer,
      `SELECT (SELECT count(*)::int FROM pg_replication_slots) AS slots,
              (SELECT count(*)::int FROM pg_roles WHERE rolname LIKE 'tenantdb_move_%') AS "moveRoles"`,
    );
    expect(src).toEqual({ slots: 0, moveRoles: 0 });
    expect(await canLogin(creds)).toBe(true);
    expect((await f.api('POST', '/api/database/allocate', ids)).body.db_server_id).toBe(a.id);
    // A cancelled move cannot be cancelled into anything else; the tenant may move again.
    expect((await adminPost(`/api/database/admin/moves/${started.body.id}/cancel`, {})).status).toBe(202);
    expect(await fleetRepoSlotDrift(f)).toBe(0);
  }, 120_000);
});

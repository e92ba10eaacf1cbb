// The shared allocation path end to end on real pool servers: credentials that work, tenant
// isolation, idempotency, release, rotation and the credentials read.

import { createTenantDatabasesRepo } from '@tenantdb/catalog';
import { createHttpApp } from '@tenantdb/http';
import { createLogger, Registry } from '@tenantdb/observability';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { allocationRoutes } from '../src/allocation/allocation.routes';
import { type AllocationService, inFlightKey } from '../src/allocation/allocation.service';
import { createMaterialize } from '../src/allocation/materialize';
import { canLogin, type Harness, newIds, onServer, startHarness, tenantClient } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ pools: [20, 20] });
});
afterAll(async () => {
  await h?.close();
});

const allocate = (body: object) => h.api('POST', '/api/database/allocate', body);
const liveRows = async (serverId: string) =>
  Number(
    (
      await h.db
        .selectFrom('tenant_databases')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('db_server_id', '=', serverId)
        .where('status', 'in', ['creating', 'ready', 'releasing'])
        .executeTakeFirstOrThrow()
    ).n,
  );
const usedSlots = async (serverId: string) =>
  (
    await h.db
      .selectFrom('db_servers')
      .select('current_instances')
      .where('id', '=', serverId)
      .executeTakeFirstOrThrow()
  ).current_instances;

describe('allocate', () => {
  it('returns credentials that can create a table, insert and read back', async () => {
    const res = await allocate(newIds());
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'allocated', db_host: '127.0.0.1' });
    expect(res.body.db_password.length).toBeGreaterThanOrEqual(32);
    const client = await tenantClient(res.body);
    await client.query('CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)');
    await client.query("INSERT INTO notes (body) VALUES ('hello')");
    const { rows } = await client.query('SELECT body FROM notes');
    await client.end();
    expect(rows).toEqual([{ body: 'hello' }]);
  });

  it('isolates tenants on the same pool and gives roles no elevated rights', async () => {
    // spread is not configured, so pack puts both on the same pool
    const a = (await allocate(newIds('starter'))).body;
    const b = (await allocate(newIds('starter'))).body;
    expect(a.db_server_id).toBe(b.db_server_id);
    await expect(tenantClient({ ...a, db_name: b.db_name })).rejects.toThrow(/permission denied/);
    await expect(tenantClient({ ...a, db_name: 'postgres' })).rejects.toThrow(/permission denied/);
    await expect(tenantClient({ ...a, db_name: 'template1' })).rejects.toThrow(/permission denied/);

    const server = h.servers.find((s) => s.id === a.db_server_id)!;
    const [role] = await onServer(
      server,
      'SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolconnlimit FROM pg_roles WHERE rolname = $1',
      [a.db_user],
    );
    expect(role).toEqual({
      rolsuper: false,
      rolcreatedb: false,
      rolcreaterole: false,
      rolreplication: false,
      rolbypassrls: false,
      rolconnlimit: 10, // the starter plan
    });
    const [verifier] = await onServer(server, 'SELECT rolpassword FROM pg_authid WHERE rolname = $1', [
      a.db_user,
    ]);
    expect(verifier!.rolpassword).toMatch(/^SCRAM-SHA-256\$4096:/);
  });

  it('is idempotent per instance_id, sequentially and 20 at once', async () => {
    const ids = newIds();
    const first = await allocate(ids);
    const again = await allocate(ids);
    expect(again.body).toEqual(first.body);

    const burstIds = newIds();
    const burst = await Promise.all(Array.from({ length: 20 }, () => allocate(burstIds)));
    expect(new Set(burst.map((r) => r.status))).toEqual(new Set([200]));
    expect(new Set(burst.map((r) => JSON.stringify(r.body))).size).toBe(1);
    const answer = burst[0]!.body;
    expect(await canLogin(answer)).toBe(true);
    const rows = await h.db
      .selectFrom('tenant_databases')
      .select('status')
      .where('instance_id', '=', burstIds.instance_id)
      .execute();
    expect(rows).toEqual([{ status: 'ready' }]);
    const server = h.servers.find((s) => s.id === answer.db_server_id)!;
    expect(await liveRows(server.id)).toBe(await usedSlots(server.id));
  });

  it('stores each password bound to its row: one copied into another row is refused, never handed out', async () => {
    const a = newIds();
    const b = newIds();
    const first = await allocate(a);
    const second = await allocate(b);
    expect([first.status, second.status]).toEqual([200, 200]);
    const rowOf = (instanceId: string) =>
      h.db
        .selectFrom('tenant_databases')
        .select(['id', 'password_enc'])
        .where('instance_id', '=', instanceId)
        .executeTakeFirstOrThrow();
    const [rowA, rowB] = [await rowOf(a.instance_id), await rowOf(b.instance_id)];
    expect(rowA.password_enc).toMatch(/^v2\./);
    await h.db
      .updateTable('tenant_databases')
      .set({ password_enc: rowA.password_enc })
      .where('id', '=', rowB.id)
      .execute();
    const read = await h.api('GET', `/api/database/allocations/${b.instance_id}/credentials`);
    expect(read.status).toBe(500);
    expect(JSON.stringify(read.body)).not.toContain(first.body.db_password);
    expect(h.errorLogs().join('\n')).toContain('cannot decrypt secret: authentication failed');
    // Put back, it reads again.
    await h.db
      .updateTable('tenant_databases')
      .set({ password_enc: rowB.password_enc })
      .where('id', '=', rowB.id)
      .execute();
    const again = await h.api('GET', `/api/database/allocations/${b.instance_id}/credentials`);
    expect(again.body.db_password).toBe(second.body.db_password);
  });

  it('refuses a repeat for the same instance from another customer', async () => {
    const ids = newIds();
    expect((await allocate(ids)).status).toBe(200);
    const other = await allocate({ ...ids, customer_id: crypto.randomUUID() });
    expect(other.status).toBe(409);
  });

  // Two requests for one new instance at once, from two customers: only identical requests share
  // an attempt, so the second meets the owner check instead of the first one's answer.
  it('answers one of two concurrent allocates of a new instance for two customers with 409', async () => {
    for (const require_dedicated of [undefined, false]) {
      const ids = newIds();
      const other = { ...ids, customer_id: crypto.randomUUID(), require_dedicated };
      const answers = await Promise.all([allocate(ids), allocate(other)]);
      expect(answers.map((a) => a.status).sort()).toEqual([200, 409]);
      const won = answers.find((a) => a.status === 200)!;
      const lost = answers.find((a) => a.status === 409)!;
      expect(lost.body.db_password).toBeUndefined();
      expect(JSON.stringify(lost.body)).not.toContain(won.body.db_password);
      const rows = await h.db
        .selectFrom('tenant_databases')
        .select(['status', 'customer_id'])
        .where('instance_id', '=', ids.instance_id)
        .execute();
      expect(rows).toHaveLength(1);
      expect(rows[0]!.status).toBe('ready');
    }
  });

  it('shares one attempt only between identical requests (an absent require_dedicated is false)', () => {
    const ids = newIds();
    expect(inFlightKey(ids)).toBe(inFlightKey({ ...ids, require_dedicated: false }));
    expect(inFlightKey(ids)).toBe(
      inFlightKey({ plan_tier: ids.plan_tier, customer_id: ids.customer_id, instance_id: ids.instance_id }),
    );
    expect(inFlightKey(ids)).not.toBe(inFlightKey({ ...ids, customer_id: crypto.randomUUID() }));
    expect(inFlightKey(ids)).not.toBe(inFlightKey({ ...ids, plan_tier: 'premium' }));
    expect(inFlightKey(ids)).not.toBe(inFlightKey({ ...ids, require_dedicated: true }));
  });

  it('reports an allocation without its password', async () => {
    const ids = newIds();
    const created = (await allocate(ids)).body;
    const res = await h.api('GET', `/api/database/allocations/${ids.instance_id}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      instance_id: ids.instance_id,
      status: 'ready',
      db_name: created.db_name,
    });
    expect(JSON.stringify(res.body)).not.toContain(created.db_password);
    expect((await h.api('GET', `/api/database/allocations/${crypto.randomUUID()}`)).status).toBe(404);
  });
});

describe('release', () => {
  it('drops the database and role and frees the slot; a second release succeeds', async () => {
    const ids = newIds();
    const a = (await allocate(ids)).body;
    const server = h.servers.find((s) => s.id === a.db_server_id)!;
    const before = await usedSlots(server.id);

    const res = await h.api('DELETE', `/api/database/allocations/${ids.instance_id}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'released', instance_id: ids.instance_id });
    expect(await usedSlots(server.id)).toBe(before - 1);
    expect(await onServer(server, 'SELECT 1 FROM pg_database WHERE datname = $1', [a.db_name])).toEqual([]);
    expect(await onServer(server, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [a.db_user])).toEqual([]);
    expect(await canLogin(a)).toBe(false);

    const again = await h.api('DELETE', `/api/database/allocations/${ids.instance_id}`);
    expect(again.status).toBe(200);
    expect(await usedSlots(server.id)).toBe(before - 1);
    expect((await h.api('GET', `/api/database/allocations/${ids.instance_id}`)).body.status).toBe('released');
    // never allocated at all: also success
    expect((await h.api('DELETE', `/api/database/allocations/${crypto.randomUUID()}`)).status).toBe(200);
  });
});

describe('rotate-credentials', () => {
  it('makes the old password fail and the new one work, and a repeat allocate returns the new one', async () => {
    const ids = newIds();
    const a = (await allocate(ids)).body;
    const res = await h.api('POST', `/api/database/allocations/${ids.instance_id}/rotate-credentials`);
    expect(res.status).toBe(200);
    expect(res.body.db_password).not.toBe(a.db_password);
    expect(await canLogin(a)).toBe(false);
    expect(await canLogin(res.body)).toBe(true);
    const repeat = await allocate(ids);
    expect(repeat.body.db_password).toBe(res.body.db_password);
    expect(
      (await h.api('POST', `/api/database/allocations/${crypto.randomUUID()}/rotate-credentials`)).status,
    ).toBe(404);
  });

  // A rotation's ALTER ROLE must not meet a release's drop of the same role (Postgres fails one of
  // them with "tuple concurrently updated"): the two share the rotation lock.
  it('makes a release wait for a rotation in flight, and refuses a rotation meanwhile', async () => {
    const ids = newIds();
    const a = (await allocate(ids)).body;
    const { tenant_database_id: id } = (await h.api('GET', `/api/database/allocations/${ids.instance_id}`))
      .body;
    const status = async () =>
      (
        await h.db
          .selectFrom('tenant_databases')
          .select('status')
          .where('id', '=', id)
          .executeTakeFirstOrThrow()
      ).status;
    // The test holds the lock a rotation holds while it changes the password.
    const rotation = new pg.Client({ connectionString: h.config.DATABASE_URL });
    await rotation.connect();
    try {
      await rotation.query('SELECT pg_advisory_lock(hashtext($1))', [`rotate:${id}`]);
      const rotate = await h.api('POST', `/api/database/allocations/${ids.instance_id}/rotate-credentials`);
      expect(rotate.status).toBe(409);
      const release = h.api('DELETE', `/api/database/allocations/${ids.instance_id}`);
      await vi.waitFor(async () => {
        const { rows } = await rotation.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`,
        );
        expect(rows[0].n).toBe(1);
      });
      expect(await status()).toBe('ready');
      await rotation.query('SELECT pg_advisory_unlock(hashtext($1))', [`rotate:${id}`]);
      expect((await release).status).toBe(200);
      expect(await status()).toBe('released');
      expect(await canLogin(a)).toBe(false);
    } finally {
      await rotation.end();
    }
  });
});

describe('release waiting for a rotation', () => {
  // A rotation that never ends (here: the test holding its lock) must not hold a release, and its
  // catalog connection, forever: the wait is bounded, answered 503 with Retry-After, nothing changed.
  it('answers 503 with Retry-After when the rotation lock is held past the bound, and changes nothing', async () => {
    const ids = newIds();
    const a = (await allocate(ids)).body;
    const id = a.tenant_database_id as string;
    const holder = new pg.Client({ connectionString: h.config.DATABASE_URL });
    await holder.connect();
    try {
      await holder.query('SELECT pg_advisory_lock(hashtext($1))', [`rotate:${id}`]);
      const started = Date.now();
      const release = h.api('DELETE', `/api/database/allocations/${ids.instance_id}`);
      // Old code waited for ever: give it far more than the bound, then let it go.
      const answered = await Promise.race([
        release,
        new Promise<undefined>((r) =>
          setTimeout(() => r(undefined), h.config.TENANTDB_RELEASE_LOCK_TIMEOUT_MS + 10_000),
        ),
      ]);
      await holder.query('SELECT pg_advisory_unlock(hashtext($1))', [`rotate:${id}`]);
      const res = answered ?? (await release);
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('1');
      expect(Date.now() - started).toBeGreaterThanOrEqual(h.config.TENANTDB_RELEASE_LOCK_TIMEOUT_MS - 50);
      const row = await h.db
        .selectFrom('tenant_databases')
        .select('status')
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
      expect(row.status).toBe('ready');
      expect(await canLogin(a)).toBe(true);
      // Retried once the rotation is over, the release goes through (the bound was put back).
      expect((await h.api('DELETE', `/api/database/allocations/${ids.instance_id}`)).status).toBe(200);
      expect(await canLogin(a)).toBe(false);
    } finally {
      await holder.end();
    }
  });
});

describe('an allocation being created', () => {
  // reconcile repairs a creating row not touched for its stale bound: an attempt still running
  // must keep touching its row, however long the pool server takes.
  it('touches its row every heartbeat while the pool server works, and no longer after', async () => {
    const ids = newIds();
    const a = (await allocate(ids)).body;
    const old = new Date(Date.now() - 3_600_000);
    const row = await h.db
      .updateTable('tenant_databases')
      .set({ status: 'creating', updated_at: old })
      .where('id', '=', a.tenant_database_id)
      .returningAll()
      .executeTakeFirstOrThrow();
    const updatedAt = async () =>
      (
        await h.db
          .selectFrom('tenant_databases')
          .select('updated_at')
          .where('id', '=', row.id)
          .executeTakeFirstOrThrow()
      ).updated_at;
    const seen: Date[] = [];
    const slow = async () => {
      for (let i = 0; i < 4; i++) {
        await new Promise((r) => setTimeout(r, 150));
        seen.push(await updatedAt());
      }
    };
    const materialize = createMaterialize({
      tenants: createTenantDatabasesRepo(h.db),
      tenantOps: { create: slow, claim: slow, drop: async () => {} },
      logger: createLogger({ name: 'test', level: 'silent' }),
      config: { heartbeatMs: 50 },
    });
    const server = await h.db
      .selectFrom('db_servers')
      .selectAll()
      .where('id', '=', row.db_server_id)
      .executeTakeFirstOrThrow();
    await materialize(server, row, 'unused-password');
    expect(seen.every((t) => t.getTime() > old.getTime() + 3_000_000)).toBe(true);
    expect(new Set(seen.map((t) => t.getTime())).size).toBeGreaterThan(1);
    const done = await h.db
      .selectFrom('tenant_databases')
      .select(['status', 'updated_at'])
      .where('id', '=', row.id)
      .executeTakeFirstOrThrow();
    expect(done.status).toBe('ready');
    await new Promise((r) => setTimeout(r, 200));
    expect((await updatedAt()).getTime()).toBe(done.updated_at.getTime());
  });
});

describe('credentials read', () => {
  const read = (instanceId: string, token?: string | null) =>
    h.api('GET', `/api/database/allocations/${instanceId}/credentials`, undefined, token);
  const setStatus = (instanceId: string, from: 'ready' | 'creating' | 'releasing', to: typeof from) =>
    h.db
      .updateTable('tenant_databases')
      .set({ status: to })
      .where('instance_id', '=', instanceId)
      .where('status', '=', from)
      .execute();

  it("answers allocate's credentials with tenant_database_id, a password that logs in, and audits the read", async () => {
    const ids = newIds();
    const allocated = (await allocate(ids)).body;
    const allocation = (await h.api('GET', `/api/database/allocations/${ids.instance_id}`)).body;
    expect(allocated.tenant_database_id).toBe(allocation.tenant_database_id);

    const res = await read(ids.instance_id);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      instance_id: ids.instance_id,
      tenant_database_id: allocation.tenant_database_id,
      db_server_id: allocated.db_server_id,
      db_host: allocated.db_host,
      db_port: allocated.db_port,
      db_name: allocated.db_name,
      db_user: allocated.db_user,
      db_password: allocated.db_password,
    });
    expect(await canLogin(res.body)).toBe(true);

    const audited = await h.db
      .selectFrom('audit_events')
      .select(['actor', 'request_id', 'db_server_id', 'tenant_database_id'])
      .where('instance_id', '=', ids.instance_id)
      .where('action', '=', 'allocation.read_credentials')
      .execute();
    expect(audited).toEqual([
      {
        actor: 'allocate',
        request_id: res.headers['x-request-id'],
        db_server_id: allocated.db_server_id,
        tenant_database_id: allocation.tenant_database_id,
      },
    ]);
    // A read after a rotation answers the new password.
    const rotated = await h.api('POST', `/api/database/allocations/${ids.instance_id}/rotate-credentials`);
    expect((await read(ids.instance_id)).body.db_password).toBe(rotated.body.db_password);
  });

  it('answers 404 without a live allocation and allocates nothing; 409 while creating or releasing', async () => {
    const never = crypto.randomUUID();
    const missing = await read(never);
    expect(missing.status).toBe(404);
    expect(missing.body.message).toMatch(/no live allocation/);
    expect(
      await h.db.selectFrom('tenant_databases').select('id').where('instance_id', '=', never).execute(),
    ).toEqual([]);

    const ids = newIds();
    expect((await allocate(ids)).status).toBe(200);
    for (const status of ['creating', 'releasing'] as const) {
      await setStatus(ids.instance_id, 'ready', status);
      try {
        const res = await read(ids.instance_id);
        expect(res.status).toBe(409);
        expect(res.body.message).toContain(status);
        expect(JSON.stringify(res.body)).not.toMatch(/password/);
      } finally {
        await setStatus(ids.instance_id, status, 'ready');
      }
    }

    expect((await h.api('DELETE', `/api/database/allocations/${ids.instance_id}`)).status).toBe(200);
    expect((await read(ids.instance_id)).status).toBe(404);
    expect(
      await h.db
        .selectFrom('audit_events')
        .select('id')
        .where('action', '=', 'allocation.read_credentials')
        .where('instance_id', 'in', [never, ids.instance_id])
        .execute(),
    ).toEqual([]);
  });

  it('needs a token with the allocate scope: 401 without one, 403 with another scope', async () => {
    const ids = newIds();
    expect((await allocate(ids)).status).toBe(200);
    const anonymous = await read(ids.instance_id, null);
    expect(anonymous.status).toBe(401);
    expect(JSON.stringify(anonymous.body)).not.toMatch(/password/);

    // database-service's own tokens all hold allocate: the same routes on an app whose only
    // token holds another scope show the route asks for it before the service is reached.
    let reached = false;
    const other = await createHttpApp({
      name: 'scope-test',
      version: '0.0.0',
      description: 'allocation routes behind a token without the allocate scope',
      logger: createLogger({ name: 'scope-test', level: 'silent' }),
      registry: new Registry(),
      tokens: [{ name: 'portal', token: 'portal-token', scopes: ['portal'] }],
      rateLimitPerMinute: 1_000,
      bodyLimitBytes: 1_024,
      readiness: {},
    });
    allocationRoutes(other, {
      readCredentials: async () => {
        reached = true;
        throw new Error('not reached');
      },
    } as unknown as AllocationService);
    try {
      const res = await other.inject({
        method: 'GET',
        url: `/api/database/allocations/${ids.instance_id}/credentials`,
        headers: { authorization: 'Bearer portal-token' },
      });
      expect(res.statusCode).toBe(403);
      expect(res.json().message).toContain('allocate');
      expect(reached).toBe(false);
    } finally {
      await other.close();
    }
  });
});

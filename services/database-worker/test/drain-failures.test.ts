// A drain whose moves fail (real failures: the tenant's password was set by hand as md5 on its
// server, so a move cannot copy its SCRAM verifier): each failed move is undone, the drain begins
// it again up to TENANTDB_DRAIN_MOVE_ATTEMPTS times, then reports the tenant blocked with the move's
// error, and
// the server stays draining (never drained with a tenant on it) while the tenant stays on its
// server, suspended as it was (an undone move leaves the source role as the catalog says). The
// server's warm (unclaimed) databases are dropped, not moved.
import { canLogin } from '@tenantdb/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asAdmin, type Fleet, newIds, startFleet, waitFor } from './harness';
import { fleetRepoSlotDrift } from './moves-drift';
import { allocate, asTenant, makePool } from './moves-kit';

let f: Fleet;

beforeAll(async () => {
  f = await startFleet({
    replicas: 1,
    env: {
      TENANTDB_DRAIN_MOVE_ATTEMPTS: '2',
      TENANTDB_DRAIN_STEP_MS: '300',
      TENANTDB_SHARED_HEADROOM: '0',
      TENANTDB_WARM_DATABASES: '2',
    },
  });
}, 180_000);

afterAll(async () => {
  await f?.close();
}, 120_000);

const admin = (method: 'GET' | 'POST', url: string) => f.api(method, url, undefined, f.adminToken);

describe('a drain whose moves keep failing', () => {
  it('retries a bounded number of times, then reports the tenant blocked with the error; not drained', async () => {
    const source = await makePool(f, { name: 'fail-src', priority: 10, max_instances: 3 });
    const t = await allocate(f, newIds('standard'));
    expect(t.creds.db_server_id).toBe(source.id);
    await asTenant(
      t.creds,
      `CREATE SCHEMA app;
       CREATE TABLE app.big (id bigserial PRIMARY KEY, v text);
       INSERT INTO app.big (v) SELECT md5(g::text) FROM generate_series(1, 1000) g;`,
    );
    // A password changed by hand, stored as md5: no SCRAM verifier a move could copy. And suspended:
    // each undone move must leave its source role as the catalog says (still NOLOGIN).
    const setPassword = (encryption: 'md5' | 'scram-sha-256') =>
      asAdmin(
        f,
        source,
        `SET password_encryption = '${encryption}';
         ALTER ROLE "${t.creds.db_user}" PASSWORD $pw$${t.creds.db_password}$pw$`,
      );
    await setPassword('md5');
    expect((await admin('POST', `/api/database/admin/allocations/${t.ids.instance_id}/suspend`)).status).toBe(
      200,
    );
    const target = await makePool(f, { name: 'fail-dst', priority: 20, max_instances: 3 });
    const warmOnSource = () =>
      f.db
        .selectFrom('tenant_databases')
        .select('db_name')
        .where('db_server_id', '=', source.id)
        .where('status', '=', 'warm')
        .where('ready_at', 'is not', null)
        .execute();
    await waitFor(async () => (await warmOnSource()).length > 0, 60_000, 'warm databases on the source');
    const warm = (await warmOnSource()).map((w) => w.db_name);

    expect((await admin('POST', `/api/database/admin/pools/${source.id}/drain`)).status).toBe(200);
    let drain:
      | { moves_failed: number; blocked: { instance_id: string | null; reason: string }[] }
      | undefined;
    await waitFor(
      async () => {
        drain = (await admin('GET', `/api/database/admin/pools/${source.id}`)).body.drain;
        return drain!.blocked.length > 0;
      },
      240_000,
      `the tenant to be reported blocked (last ${JSON.stringify(drain)})`,
    );
    expect(drain!.moves_failed).toBe(2);
    expect(drain!.blocked).toEqual([
      {
        tenant_database_id: expect.any(String),
        instance_id: t.ids.instance_id,
        reason: expect.stringMatching(/failed 2 times.*no SCRAM-SHA-256 password on the source/),
      },
    ]);
    const moves = await f.db
      .selectFrom('tenant_moves')
      .select(['phase', 'requested_by'])
      .where('source_server_id', '=', source.id)
      .execute();
    expect(moves).toEqual([
      { phase: 'failed', requested_by: 'database-worker (drain)' },
      { phase: 'failed', requested_by: 'database-worker (drain)' },
    ]);

    // No third try, the server is not drained, the tenant is still served from the source.
    await new Promise((r) => setTimeout(r, 2_000));
    const detail = (await admin('GET', `/api/database/admin/pools/${source.id}`)).body;
    expect(detail).toMatchObject({ status: 'draining', current_instances: 1 });
    // The warm databases went: rows and databases, none left on the server.
    expect(detail.drain.warm_left).toBe(0);
    const names = warm.map((w) => `'${w}'`).join(', ');
    const [left] = await asAdmin<{ n: number }>(
      f,
      source,
      `SELECT count(*)::int AS n FROM pg_database WHERE datname IN (${names})`,
    );
    expect(left!.n).toBe(0);
    expect(
      await f.db.selectFrom('tenant_moves').select('id').where('source_server_id', '=', source.id).execute(),
    ).toHaveLength(2);
    const [role] = await asAdmin<{ login: boolean }>(
      f,
      source,
      `SELECT rolcanlogin AS login FROM pg_roles WHERE rolname = '${t.creds.db_user}'`,
    );
    expect(role?.login).toBe(false);
    // Put right and resumed, it logs in where it always was.
    await setPassword('scram-sha-256');
    expect((await admin('POST', `/api/database/admin/allocations/${t.ids.instance_id}/resume`)).status).toBe(
      200,
    );
    const now = (await f.api('POST', '/api/database/allocate', t.ids)).body;
    expect(now.db_server_id).toBe(source.id);
    expect(await canLogin(now)).toBe(true);
    expect((await f.servers()).find((s) => s.id === target.id)!.current_instances).toBe(0);
    expect(await fleetRepoSlotDrift(f)).toBe(0);
  }, 360_000);
});

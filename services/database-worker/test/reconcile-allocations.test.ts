// reconcile's repair of allocations a crashed database-service left half done: a row stuck in
// creating (repaired once it has not been touched for TENANTDB_STALE_ALLOCATION_MS, never while its
// attempt still beats), and a rotation killed between its steps (pending password, ALTER ROLE,
// promote) — after one reconcile run the credentials answered log in.
import { generatePassword } from '@tenantdb/secrets';
import type { TenantCredentials } from '@tenantdb/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnswers } from '../../database-service/src/allocation/answers';
import { createReleaseRotate } from '../../database-service/src/allocation/release-rotate';
import { loadConfig } from '../src/config';
import type { JobContext } from '../src/context';
import { createWorker, type DatabaseWorker } from '../src/worker';
import { activePool, asAdmin, canLogin, type Fleet, newIds, startFleet } from './harness';

let fleet: Fleet;
let reconciler: DatabaseWorker;
let reconcile: (payload: unknown, ctx: JobContext) => Promise<unknown>;

beforeAll(async () => {
  fleet = await startFleet({ replicas: 1 });
  await activePool(fleet);
  // No scheduled job runs beside the test: reconcile is run by hand on a worker that is wired but
  // not consuming, with the default stale bound.
  await fleet.workers[0]!.stop();
  reconciler = await createWorker(loadConfig(fleet.env), fleet.workers[0]!.deps.logger);
  reconcile = reconciler.handlers.reconcile as typeof reconcile;
});
afterAll(async () => {
  await reconciler?.stop();
  await fleet?.close();
});

const once = () => reconcile({}, { job: {} as JobContext['job'], log: reconciler.deps.logger });

async function allocated() {
  const ids = newIds();
  const res = await fleet.api('POST', '/api/database/allocate', ids);
  expect(res.status).toBe(200);
  return { ids, body: res.body as TenantCredentials & { tenant_database_id: string } };
}

const rowOf = (instanceId: string) =>
  fleet.db
    .selectFrom('tenant_databases')
    .selectAll()
    .where('instance_id', '=', instanceId)
    .orderBy('created_at', 'desc')
    .executeTakeFirstOrThrow();

describe('reconcile of allocations stuck in creating', () => {
  it('repairs one not touched for longer than the (default, 2 min) bound in one run, and leaves a fresh one', async () => {
    const stale = await allocated();
    const fresh = await allocated();
    // A crash mid-create, 3 minutes ago (well inside the old 10-minute bound); and an attempt
    // still running, its heartbeat 20 s ago.
    const plant = (instanceId: string, ageMs: number) =>
      fleet.db
        .updateTable('tenant_databases')
        .set({ status: 'creating', ready_at: null, updated_at: new Date(Date.now() - ageMs) })
        .where('instance_id', '=', instanceId)
        .execute();
    await plant(stale.ids.instance_id, 180_000);
    await plant(fresh.ids.instance_id, 20_000);

    const summary = (await once()) as { allocations: number; errors: number };
    expect(summary.errors).toBe(0);
    expect(summary.allocations).toBeGreaterThanOrEqual(1);

    const repaired = await rowOf(stale.ids.instance_id);
    expect(repaired.status).toBe('failed');
    expect(await canLogin(stale.body)).toBe(false);
    const pool = (await fleet.servers('active')).find((s) => s.id === repaired.db_server_id)!;
    const [left] = await asAdmin<{ n: number }>(
      fleet,
      pool,
      `SELECT count(*)::int AS n FROM pg_database WHERE datname = '${repaired.db_name}'`,
    );
    expect(left!.n).toBe(0);

    expect((await rowOf(fresh.ids.instance_id)).status).toBe('creating');
    expect(await canLogin(fresh.body)).toBe(true);
    expect(loadConfig(fleet.env).TENANTDB_STALE_ALLOCATION_MS).toBeLessThanOrEqual(120_000);
  });
});

describe('a rotation killed between its steps', () => {
  const killed = () => {
    throw new Error('killed mid-rotation');
  };
  /** A rotation wired as database-service wires it, the process "killed" at one step (the seam). */
  function rotation(crash: 'before-alter-role' | 'before-promote') {
    const d = reconciler.deps;
    return createReleaseRotate({
      db: d.db,
      servers: d.servers,
      tenants: {
        ...d.tenants,
        ...(crash === 'before-promote' ? { settlePendingPassword: async () => killed() } : {}),
      },
      audit: d.audit,
      moves: d.moves,
      restores: d.restores,
      secrets: d.secrets,
      tenantOps: {
        drop: d.tenantOps.drop,
        setPassword: crash === 'before-alter-role' ? async () => killed() : d.tenantOps.setPassword,
      },
      answers: createAnswers({ ...d, config: { retryAfterSeconds: 1 } }),
      config: { releaseLockTimeoutMs: 1_000 },
    });
  }
  const ctx = { actor: 'test', requestId: 'test-rotation' };
  const credentials = (instanceId: string) =>
    fleet.api('GET', `/api/database/allocations/${instanceId}/credentials`);

  for (const crash of ['before-alter-role', 'before-promote'] as const) {
    it(`killed ${crash}: answered 503 (never a dead password) until one reconcile run, then the credentials log in`, async () => {
      const { ids, body } = await allocated();
      await expect(rotation(crash).rotate(ids.instance_id, ctx)).rejects.toThrow('killed mid-rotation');
      const row = await rowOf(ids.instance_id);
      expect(row.password_pending_enc).not.toBeNull();
      // The server has the new password (killed before promote) or still the old one.
      expect(await canLogin(body)).toBe(crash === 'before-alter-role');
      for (const answer of [
        await credentials(ids.instance_id),
        await fleet.api('POST', '/api/database/allocate', ids),
      ]) {
        expect(answer.status).toBe(503);
        expect(answer.headers['retry-after']).toBe('1');
        expect(answer.body.db_password).toBeUndefined();
      }

      const summary = (await once()) as { allocations: number; errors: number };
      expect(summary.errors).toBe(0);
      expect((await rowOf(ids.instance_id)).password_pending_enc).toBeNull();
      const after = await credentials(ids.instance_id);
      expect(after.status).toBe(200);
      expect(await canLogin(after.body)).toBe(true);
      if (crash === 'before-alter-role') expect(after.body.db_password).toBe(body.db_password);
      else expect(after.body.db_password).not.toBe(body.db_password);
      const again = await fleet.api('POST', '/api/database/allocate', ids);
      expect(again.body.db_password).toBe(after.body.db_password);
    });
  }

  /** A rotation that stored its new password as pending and died before the server had it. */
  async function pendingLeftBehind(instanceId: string) {
    const row = await rowOf(instanceId);
    const pending = generatePassword();
    fleet.seenSecrets.add(pending);
    await fleet.db
      .updateTable('tenant_databases')
      .set({ password_pending_enc: fleet.secrets.encrypt(pending, row.id) })
      .where('id', '=', row.id)
      .execute();
    const pool = (await fleet.servers('active')).find((s) => s.id === row.db_server_id)!;
    return { row, pending, pool };
  }

  it('neither password logs in (the role changed meanwhile): reconcile gives the role the pending one', async () => {
    const { ids, body } = await allocated();
    const { row, pending, pool } = await pendingLeftBehind(ids.instance_id);
    await asAdmin(fleet, pool, `ALTER ROLE ${row.db_user} PASSWORD '${generatePassword()}'`);
    expect(await canLogin(body)).toBe(false);

    expect(((await once()) as { errors: number }).errors).toBe(0);
    const after = await credentials(ids.instance_id);
    expect(after.status).toBe(200);
    expect(after.body.db_password).toBe(pending);
    expect(await canLogin(after.body)).toBe(true);
  });

  it('a suspended tenant whose rotation was left half done: settled without opening its login', async () => {
    const { ids, body } = await allocated();
    const suspend = (verb: 'suspend' | 'resume') =>
      fleet.api(
        'POST',
        `/api/database/admin/allocations/${ids.instance_id}/${verb}`,
        undefined,
        fleet.adminToken,
      );
    expect((await suspend('suspend')).status).toBe(200);
    const { row, pending, pool } = await pendingLeftBehind(ids.instance_id);
    const canLoginRole = async () =>
      (
        await asAdmin<{ rolcanlogin: boolean }>(
          fleet,
          pool,
          `SELECT rolcanlogin FROM pg_roles WHERE rolname = '${row.db_user}'`,
        )
      )[0]?.rolcanlogin;

    // Neither password logs in while suspended: reconcile gives the role the pending one, and
    // the role stays NOLOGIN (it once came out of this repair with LOGIN: suspension undone).
    expect(((await once()) as { errors: number }).errors).toBe(0);
    expect((await rowOf(ids.instance_id)).password_pending_enc).toBeNull();
    expect(await canLoginRole()).toBe(false);
    expect(await canLogin({ ...body, db_password: pending })).toBe(false);

    expect((await suspend('resume')).status).toBe(200);
    const after = await credentials(ids.instance_id);
    expect(after.body.db_password).toBe(pending);
    expect(await canLogin(after.body)).toBe(true);
  });

  it('a rotation that is not killed leaves no pending password and answers a password that logs in', async () => {
    const { ids, body } = await allocated();
    const rotated = await fleet.api(
      'POST',
      `/api/database/allocations/${ids.instance_id}/rotate-credentials`,
    );
    expect(rotated.status).toBe(200);
    expect(await canLogin(rotated.body)).toBe(true);
    expect(await canLogin(body)).toBe(false);
    expect((await rowOf(ids.instance_id)).password_pending_enc).toBeNull();
    expect((await credentials(ids.instance_id)).body.db_password).toBe(rotated.body.db_password);
  });
});

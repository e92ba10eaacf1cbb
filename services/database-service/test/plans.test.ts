// Plans through the admin API: create, read, update, retire; validation (400, nothing changed),
// scopes, audit events, and the refusal to retire a plan that a live tenant uses.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, newIds, startHarness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ pools: [10] });
});
afterAll(() => h?.close());

const admin = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown) =>
  h.api(method, url, body, h.adminToken);

const plansRows = () => h.db.selectFrom('plans').selectAll().orderBy('plan_tier').execute();

describe('plans through the admin API', () => {
  it('creates, reads, lists and updates a plan, each change audited', async () => {
    const created = await admin('POST', '/api/database/admin/plans', {
      plan_tier: 'hobby',
      placement: 'shared',
      connection_limit: 3,
      storage_quota_mb: 100,
      quota_warn_fraction: 0.75,
      quota_lift_fraction: 0.5,
      quota_grace_seconds: 60,
      statement_timeout_ms: 30_000,
      temp_file_limit_mb: 64,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body.plan).toMatchObject({
      plan_tier: 'hobby',
      placement: 'shared',
      connection_limit: 3,
      storage_quota_mb: 100,
      quota_warn_fraction: 0.75,
      quota_lift_fraction: 0.5,
      quota_grace_seconds: 60,
      statement_timeout_ms: 30_000,
      idle_in_transaction_timeout_ms: null,
      temp_file_limit_mb: 64,
      work_mem_mb: null,
      backup_interval_hours: null,
      backup_retention_days: 7,
      retired_at: null,
    });

    const one = await admin('GET', '/api/database/admin/plans/hobby');
    expect(one.status).toBe(200);
    expect(one.body.plan).toEqual(created.body.plan);
    const list = await admin('GET', '/api/database/admin/plans');
    expect(list.body.plans.map((p: { plan_tier: string }) => p.plan_tier)).toContain('hobby');
    // the seeded shared plans carry quotas
    expect(list.body.plans.find((p: { plan_tier: string }) => p.plan_tier === 'free').storage_quota_mb).toBe(
      512,
    );

    const updated = await admin('PATCH', '/api/database/admin/plans/hobby', {
      connection_limit: 6,
      storage_quota_mb: 200,
    });
    expect(updated.status, JSON.stringify(updated.body)).toBe(200);
    expect(updated.body.plan).toMatchObject({
      connection_limit: 6,
      storage_quota_mb: 200,
      quota_grace_seconds: 60,
    });

    const audit = await h.db
      .selectFrom('audit_events')
      .select(['action', 'actor', 'details'])
      .where('action', 'like', 'plan.%')
      .orderBy('occurred_at')
      .execute();
    expect(audit.map((e) => e.action)).toEqual(['plan.created', 'plan.updated']);
    expect(audit[1]!.actor).toBe('admin');
    expect(audit[1]!.details).toMatchObject({
      plan_tier: 'hobby',
      changed: { connection_limit: { from: 3, to: 6 }, storage_quota_mb: { from: 100, to: 200 } },
    });
  });

  it.each([
    [{ plan_tier: 'x1', placement: 'shared' }, 'connection_limit'],
    [{ plan_tier: 'X1', placement: 'shared', connection_limit: 1 }, 'plan_tier'],
    [{ plan_tier: 'x1', placement: 'moon', connection_limit: 1 }, 'placement'],
    [{ plan_tier: 'x1', placement: 'shared', connection_limit: 0 }, 'connection_limit'],
    [{ plan_tier: 'x1', placement: 'shared', connection_limit: 1, storage_quota_mb: -5 }, 'storage_quota_mb'],
    [
      { plan_tier: 'x1', placement: 'shared', connection_limit: 1, quota_warn_fraction: 1.5 },
      'quota_warn_fraction',
    ],
    [
      { plan_tier: 'x1', placement: 'shared', connection_limit: 1, quota_warn_fraction: 0.333 },
      'decimal places',
    ],
    [
      {
        plan_tier: 'x1',
        placement: 'shared',
        connection_limit: 1,
        quota_warn_fraction: 0.5,
        quota_lift_fraction: 0.9,
      },
      'quota_lift_fraction',
    ],
    [
      { plan_tier: 'x1', placement: 'shared', connection_limit: 1, statement_timeout_ms: 1.5 },
      'statement_timeout_ms',
    ],
    [{ plan_tier: 'x1', placement: 'shared', connection_limit: 1, superuser: true }, 'unknown field'],
  ])('refuses to create %j with 400 and changes nothing', async (body, message) => {
    const before = await plansRows();
    const res = await admin('POST', '/api/database/admin/plans', body);
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.message).toContain(message);
    expect(await plansRows()).toEqual(before);
  });

  it('refuses a bad update with 400 (against the stored fractions too) and an unknown plan with 404', async () => {
    const before = await plansRows();
    for (const body of [
      {},
      { placement: 'dedicated' },
      { quota_lift_fraction: 0.95 },
      { work_mem_mb: 0 },
      { backup_interval_hours: 0 },
      { backup_retention_days: null },
    ]) {
      const res = await admin('PATCH', '/api/database/admin/plans/starter', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    expect((await admin('PATCH', '/api/database/admin/plans/nosuch', { connection_limit: 2 })).status).toBe(
      404,
    );
    expect((await admin('GET', '/api/database/admin/plans/nosuch')).status).toBe(404);
    expect(await plansRows()).toEqual(before);
  });

  it('sets and clears scheduled backups (interval, retention) on a plan', async () => {
    const set = await admin('PATCH', '/api/database/admin/plans/starter', {
      backup_interval_hours: 24,
      backup_retention_days: 14,
    });
    expect(set.status, JSON.stringify(set.body)).toBe(200);
    expect(set.body.plan).toMatchObject({ backup_interval_hours: 24, backup_retention_days: 14 });
    const cleared = await admin('PATCH', '/api/database/admin/plans/starter', {
      backup_interval_hours: null,
    });
    expect(cleared.body.plan).toMatchObject({ backup_interval_hours: null, backup_retention_days: 14 });
  });

  it('refuses a duplicate name with 409', async () => {
    const res = await admin('POST', '/api/database/admin/plans', {
      plan_tier: 'standard',
      placement: 'shared',
      connection_limit: 1,
    });
    expect(res.status).toBe(409);
  });

  it('needs admin to change plans and admin:read to read them', async () => {
    expect((await h.api('GET', '/api/database/admin/plans', undefined, h.allocateToken)).status).toBe(403);
    const body = { plan_tier: 'nope', placement: 'shared', connection_limit: 1 };
    expect((await h.api('POST', '/api/database/admin/plans', body, h.allocateToken)).status).toBe(403);
    expect((await h.api('DELETE', '/api/database/admin/plans/starter', undefined, null)).status).toBe(401);
  });

  it('refuses to retire a plan a live tenant uses (409), retires it once released, and allocate then refuses it', async () => {
    const made = await admin('POST', '/api/database/admin/plans', {
      plan_tier: 'shortlived',
      placement: 'shared',
      connection_limit: 2,
    });
    expect(made.status).toBe(201);
    const ids = newIds('shortlived');
    const allocated = await h.api('POST', '/api/database/allocate', ids);
    expect(allocated.status, JSON.stringify(allocated.body)).toBe(200);

    const refused = await admin('DELETE', '/api/database/admin/plans/shortlived');
    expect(refused.status).toBe(409);
    expect(refused.body.message).toContain('1 live tenant');
    expect((await admin('GET', '/api/database/admin/plans/shortlived')).body.plan.retired_at).toBeNull();

    expect((await h.api('DELETE', `/api/database/allocations/${ids.instance_id}`)).status).toBe(200);
    const retired = await admin('DELETE', '/api/database/admin/plans/shortlived');
    expect(retired.status, JSON.stringify(retired.body)).toBe(200);
    expect(retired.body.plan.retired_at).not.toBeNull();
    expect((await admin('DELETE', '/api/database/admin/plans/shortlived')).status).toBe(200); // a repeat

    const again = await h.api('POST', '/api/database/allocate', newIds('shortlived'));
    expect(again.status).toBe(400);
    expect(again.body.message).toContain('retired');
    const names = (await h.api('GET', '/api/database/plans')).body.plans.map(
      (p: { plan_tier: string }) => p.plan_tier,
    );
    expect(names).not.toContain('shortlived');
    expect(
      (await admin('GET', '/api/database/admin/plans')).body.plans.map(
        (p: { plan_tier: string }) => p.plan_tier,
      ),
    ).not.toContain('shortlived');
    expect(
      (await admin('GET', '/api/database/admin/plans?include_retired=true')).body.plans.map(
        (p: { plan_tier: string }) => p.plan_tier,
      ),
    ).toContain('shortlived');
    expect(
      (await admin('PATCH', '/api/database/admin/plans/shortlived', { connection_limit: 3 })).status,
    ).toBe(404);
    const actions = await h.db
      .selectFrom('audit_events')
      .select('action')
      .where('action', '=', 'plan.retired')
      .execute();
    expect(actions).toHaveLength(1);
  });
});

// An unknown plan_tier is refused at create (400, nothing created), from the plan names
// database-service answers on GET /api/database/plans; a plan added to the catalog works at once;
// with database-service unreachable a create is still accepted (wait-for-database settles it).
import { createDatabaseServiceClient } from '@tenantdb/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPlanCatalog } from '../src/instances/plans';
import { type Harness, newInstance, startHarness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

describe('GET /api/database/plans (database-service)', () => {
  it('answers the plan names and placements to the allocate scope only', async () => {
    const res = await h.databaseService.inject({
      method: 'GET',
      url: '/api/database/plans',
      headers: { authorization: `Bearer ${h.allocateToken}` },
    });
    expect(res.statusCode).toBe(200);
    const { plans } = res.json() as { plans: { plan_tier: string; placement: string }[] };
    expect(plans).toContainEqual({ plan_tier: 'standard', placement: 'shared' });
    expect(Object.keys(plans[0]!).sort()).toEqual(['placement', 'plan_tier']);
    const anonymous = await h.databaseService.inject({ method: 'GET', url: '/api/database/plans' });
    expect(anonymous.statusCode).toBe(401);
  });
});

describe('plan_tier at create', () => {
  it('an unknown plan is 400 at once and nothing is created', async () => {
    const body = newInstance({ plan_tier: 'no-such-plan' });
    const res = await h.api('POST', '/api/v1/instances', { body, headers: { 'idempotency-key': 'k-plan' } });
    expect(res.status).toBe(400);
    expect(res.body.message).toBe('unknown plan_tier "no-such-plan"');
    const rows = await h.deps.db
      .selectFrom('instances')
      .select('id')
      .where('customer_id', '=', body.customer_id)
      .execute();
    expect(rows).toEqual([]);
  });

  it('a plan added to the catalog is accepted at once (a miss looks again)', async () => {
    const known = await h.api('POST', '/api/v1/instances', { body: newInstance() });
    expect(known.status).toBe(202); // the cache now holds the list without the new plan
    await h.catalogDb
      .insertInto('plans')
      .values({ plan_tier: 'brand-new', placement: 'shared', connection_limit: 10, cpu_limit: null })
      .execute();
    await new Promise((r) => setTimeout(r, 1_100)); // misses look again at most once a second
    const body = newInstance({ plan_tier: 'brand-new' });
    const res = await h.api('POST', '/api/v1/instances', { body });
    expect(res.status).toBe(202);
    await h.waitForStatus(res.body.id, body.customer_id, ['ready']);
  });

  it('database-service unreachable and the plan not known from before: accepted, not refused', async () => {
    const unreachable = createDatabaseServiceClient({ baseUrl: 'http://127.0.0.1:9', token: 'x'.repeat(24) });
    const plans = createPlanCatalog(unreachable);
    expect(await plans.check('standard')).toBe('unavailable');
    const reachable = createPlanCatalog(h.deps.databaseService);
    expect(await reachable.check('standard')).toBe('known');
    expect(await reachable.check('no-such-plan')).toBe('unknown');
  });
});

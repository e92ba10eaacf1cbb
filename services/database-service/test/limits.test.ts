// Limits on what a caller can make (issue 14): per customer (live instances, dedicated servers;
// from the plan's columns or the configured defaults) → 409, and over the fleet (a ceiling, a
// bound on servers provisioning at once) → 429 + Retry-After; over a limit nothing is created,
// however many requests arrive at once. And provision-dedicated checks the instance's live
// allocation and its owner before it makes anything (409).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, newIds, startHarness } from './harness';

const provisionJobs = async (h: Harness) =>
  (await h.queues.queue('provisioning').getJobs(['waiting', 'delayed', 'active'])).filter(
    (j) => j.name === 'provision-server',
  );
const serversOf = (h: Harness, customerId: string) =>
  h.db.selectFrom('db_servers').selectAll().where('dedicated_to_customer_id', '=', customerId).execute();
const statuses = (answers: { status: number }[]) => answers.map((a) => a.status).sort();

describe('per-customer limits', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      pools: [30],
      env: { TENANTDB_MAX_INSTANCES_PER_CUSTOMER: '4', TENANTDB_MAX_DEDICATED_PER_CUSTOMER: '3' },
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('10 allocates at once for one customer: exactly the configured 4 get a database, the rest 409', async () => {
    const customer = crypto.randomUUID();
    const answers = await Promise.all(
      Array.from({ length: 10 }, () =>
        h.api('POST', '/api/database/allocate', { ...newIds('standard'), customer_id: customer }),
      ),
    );
    expect(statuses(answers)).toEqual([...Array(4).fill(200), ...Array(6).fill(409)]);
    const refused = answers.find((a) => a.status === 409)!;
    expect(refused.body).toMatchObject({ statusCode: 409, message: expect.stringMatching(/limit \(4\)/) });
    const rows = await h.db
      .selectFrom('tenant_databases')
      .select('status')
      .where('customer_id', '=', customer)
      .execute();
    expect(rows.map((r) => r.status)).toEqual(Array(4).fill('ready'));
    // Another customer is not affected; a release frees a place.
    expect((await h.api('POST', '/api/database/allocate', newIds('standard'))).status).toBe(200);
    const held = answers.find((a) => a.status === 200)!;
    const instanceId = (
      await h.db
        .selectFrom('tenant_databases')
        .select('instance_id')
        .where('id', '=', held.body.tenant_database_id)
        .executeTakeFirstOrThrow()
    ).instance_id!;
    expect((await h.api('DELETE', `/api/database/allocations/${instanceId}`)).status).toBe(200);
    const again = await h.api('POST', '/api/database/allocate', {
      ...newIds('standard'),
      customer_id: customer,
    });
    expect(again.status).toBe(200);
  });

  it("a plan's max_instances_per_customer overrides the configured default", async () => {
    await h.db
      .updateTable('plans')
      .set({ max_instances_per_customer: 1 })
      .where('plan_tier', '=', 'starter')
      .execute();
    const customer = crypto.randomUUID();
    const answers = await Promise.all(
      Array.from({ length: 4 }, () =>
        h.api('POST', '/api/database/allocate', { ...newIds('starter'), customer_id: customer }),
      ),
    );
    expect(statuses(answers)).toEqual([200, 409, 409, 409]);
  });

  it('8 provision-dedicated at once for one customer: exactly 3 servers and 3 jobs, the rest 409', async () => {
    const customer = crypto.randomUUID();
    const jobsBefore = (await provisionJobs(h)).length;
    const answers = await Promise.all(
      Array.from({ length: 8 }, () =>
        h.api('POST', '/api/database/provision-dedicated', { ...newIds('premium'), customer_id: customer }),
      ),
    );
    expect(statuses(answers)).toEqual([...Array(3).fill(202), ...Array(5).fill(409)]);
    expect(answers.find((a) => a.status === 409)!.body.message).toMatch(/dedicated servers, its limit \(3\)/);
    expect(await serversOf(h, customer)).toHaveLength(3);
    expect((await provisionJobs(h)).length - jobsBefore).toBe(3);
    // A repeat of an admitted instance still answers 202 (its server exists): not a new one.
    const admitted = answers.find((a) => a.status === 202)!;
    const server = (await serversOf(h, customer)).find((s) => s.id === admitted.body.db_server_id)!;
    const repeat = await h.api('POST', '/api/database/provision-dedicated', {
      instance_id: server.dedicated_to_instance_id,
      customer_id: customer,
      plan_tier: 'premium',
    });
    expect(repeat.status).toBe(202);
    expect(await serversOf(h, customer)).toHaveLength(3);
  });

  it("provision-dedicated for another customer's instance: 409, no server, no job", async () => {
    const owner = newIds('standard');
    expect((await h.api('POST', '/api/database/allocate', owner)).status).toBe(200);
    const jobsBefore = (await provisionJobs(h)).length;
    const intruder = { ...owner, customer_id: crypto.randomUUID(), plan_tier: 'premium' };
    const res = await h.api('POST', '/api/database/provision-dedicated', intruder);
    expect(res.status).toBe(409);
    expect(res.body.message).toMatch(/another customer/);
    // The owner itself gets no second (dedicated) database beside the shared one either.
    const own = await h.api('POST', '/api/database/provision-dedicated', { ...owner, plan_tier: 'premium' });
    expect(own.status).toBe(409);
    const servers = await h.db
      .selectFrom('db_servers')
      .select('id')
      .where('dedicated_to_instance_id', '=', owner.instance_id)
      .execute();
    expect(servers).toHaveLength(0);
    expect((await provisionJobs(h)).length).toBe(jobsBefore);
  });
});

describe('fleet limits', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { TENANTDB_MAX_STARTING_SERVERS: '3', TENANTDB_MAX_SERVERS: '5' } });
  });
  afterAll(async () => {
    await h?.close();
  });
  const fleet = () => h.db.selectFrom('db_servers').selectAll().execute();
  const admin = (body: object) => h.api('POST', '/api/database/admin/pools', body, h.adminToken);

  it('8 dedicated servers asked at once with 3 allowed to provision: exactly 3 made, the rest 429 + Retry-After', async () => {
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => h.api('POST', '/api/database/provision-dedicated', newIds('premium'))),
    );
    expect(statuses(answers)).toEqual([...Array(3).fill(202), ...Array(5).fill(429)]);
    const refused = answers.find((a) => a.status === 429)!;
    expect(refused.headers['retry-after']).toBe(String(h.config.TENANTDB_RETRY_AFTER_SECONDS));
    expect(refused.body).toMatchObject({ statusCode: 429, message: expect.stringMatching(/provisioning/) });
    expect(await fleet()).toHaveLength(3);
    expect(await provisionJobs(h)).toHaveLength(3);

    // The admin API is bound by the same count.
    const pool = await admin({ max_instances: 5 });
    expect(pool.status).toBe(429);
    expect(pool.headers['retry-after']).toBeDefined();
    expect(await fleet()).toHaveLength(3);
  });

  it('once they are up, the ceiling of 5 servers holds: 2 more, then 429, from every path', async () => {
    // Stand in for the worker: the three came up.
    await h.db.updateTable('db_servers').set({ status: 'active' }).execute();
    const answers = await Promise.all([
      ...Array.from({ length: 4 }, () =>
        h.api('POST', '/api/database/provision-dedicated', newIds('premium')),
      ),
      admin({ max_instances: 5 }),
      admin({ max_instances: 5 }),
    ]);
    const made = answers.filter((a) => a.status === 202).length;
    expect(made).toBe(2);
    expect(answers.filter((a) => a.status === 429)).toHaveLength(answers.length - 2);
    expect(await fleet()).toHaveLength(5);
    expect(await provisionJobs(h)).toHaveLength(5);
    const refused = await admin({ max_instances: 5 });
    expect(refused.status).toBe(429);
    expect(refused.body.message).toMatch(/ceiling of 5 servers/);
    // A decommissioned server leaves room again.
    const [gone] = await fleet();
    await h.db
      .updateTable('db_servers')
      .set({ status: 'decommissioned' })
      .where('id', '=', gone!.id)
      .execute();
    expect((await admin({ max_instances: 5 })).status).toBe(202);
  });
});

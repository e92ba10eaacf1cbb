// Suspend and resume through instance-service (the portal's API), against a real database-service
// and pool server: suspended, the instance's credentials no longer log in; resumed, the same ones
// do again; another customer's instance is 404 and changes nothing.
import { canLogin } from '@tenantdb/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, newInstance, startHarness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h?.close());

describe('suspend and resume an instance', () => {
  it('refuses logins while suspended and lets the same password in once resumed', async () => {
    const body = newInstance();
    const created = await h.api('POST', '/api/v1/instances', { body });
    await h.waitForStatus(created.body.id, body.customer_id, ['ready']);
    const q = `?customer_id=${body.customer_id}`;
    const creds = (await h.api('POST', `/api/v1/instances/${created.body.id}/credentials${q}`)).body;
    expect(await canLogin(creds)).toBe(true);

    const other = `?customer_id=${crypto.randomUUID()}`;
    expect((await h.api('POST', `/api/v1/instances/${created.body.id}/suspend${other}`)).status).toBe(404);
    expect(await canLogin(creds)).toBe(true);

    const suspended = await h.api('POST', `/api/v1/instances/${created.body.id}/suspend${q}`);
    expect(suspended.status, JSON.stringify(suspended.body)).toBe(200);
    expect(suspended.body).toEqual({ id: created.body.id, suspended: true });
    expect(await canLogin(creds)).toBe(false);

    const resumed = await h.api('POST', `/api/v1/instances/${created.body.id}/resume${q}`);
    expect(resumed.body).toEqual({ id: created.body.id, suspended: false });
    expect(await canLogin(creds)).toBe(true);
    const audit = await h.deps.db
      .selectFrom('audit_events')
      .select('action')
      .where('instance_id', '=', created.body.id)
      .where('action', 'in', ['instance.suspended', 'instance.resumed'])
      .execute();
    expect(audit.map((a) => a.action).sort()).toEqual(['instance.resumed', 'instance.suspended']);
    expect(
      (await h.api('POST', `/api/v1/instances/${created.body.id}/suspend${q}`, { token: null })).status,
    ).toBe(401);
  });
});

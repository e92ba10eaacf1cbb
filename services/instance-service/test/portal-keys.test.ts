// Portal keys: named API keys with the `portal` scope, made through database-service's admin API,
// accepted by instance-service beside the configured portal token, and refused once revoked.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Harness, newInstance, startHarness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ env: { TENANTDB_API_KEY_CACHE_MS: '0' } });
});
afterAll(() => h?.close());

async function createKey(name: string, scopes: string[]) {
  const res = await h.databaseService.inject({
    method: 'POST',
    url: '/api/database/admin/api-keys',
    headers: { authorization: `Bearer ${h.adminToken}` },
    payload: { name, scopes },
  });
  expect(res.statusCode, res.body).toBe(201);
  const body = res.json() as { key: string; api_key: { id: string } };
  h.remember(body.key);
  return body;
}

const list = (token: string) =>
  h.api('GET', `/api/v1/instances?customer_id=${crypto.randomUUID()}`, { token });

it('accepts a portal key, audits with its name, and refuses it once revoked', async () => {
  const portal = await createKey('signup-portal', ['portal']);
  expect((await list(portal.key)).status).toBe(200);
  const body = newInstance();
  const created = await h.api('POST', '/api/v1/instances', { body, token: portal.key });
  expect(created.status, JSON.stringify(created.body)).toBe(202);
  const audit = await h.deps.db
    .selectFrom('audit_events')
    .select('actor')
    .where('instance_id', '=', created.body.id)
    .execute();
  expect(audit.map((a) => a.actor)).toContain('key:signup-portal');

  const revoke = await h.databaseService.inject({
    method: 'DELETE',
    url: `/api/database/admin/api-keys/${portal.api_key.id}`,
    headers: { authorization: `Bearer ${h.adminToken}` },
  });
  expect(revoke.statusCode).toBe(200);
  expect((await list(portal.key)).status).toBe(401);
  // the configured token is unaffected
  expect((await list(h.portalToken)).status).toBe(200);
});

it('refuses a key without the portal scope (403) and unknown keys (401)', async () => {
  const admin = await createKey('ops', ['admin']);
  expect((await list(admin.key)).status).toBe(403);
  expect((await list(`${admin.key.slice(0, -1)}${admin.key.endsWith('A') ? 'B' : 'A'}`)).status).toBe(401);
});

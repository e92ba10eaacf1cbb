// Named API keys: created (the key shown once), listed (never the key), used with their scopes,
// expired and revoked without a restart, two at once for a consumer that rotates; the configured
// tokens keep working beside them. `admin:read` sees everything and changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, newIds, startHarness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ pools: [20] });
});
afterAll(() => h?.close());

async function createKey(body: Record<string, unknown>) {
  const res = await h.api('POST', '/api/database/admin/api-keys', body, h.adminToken);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  h.remember(res.body.key);
  return res.body as { key: string; api_key: { id: string; name: string; lookup_id: string } };
}

describe('creating and listing', () => {
  it('shows the key once, keeps only its digest, and lists keys without them', async () => {
    const created = await createKey({ name: 'portal-eu', scopes: ['allocate'] });
    expect(created.key).toMatch(/^tdbk_[a-z2-7]{16}_[A-Za-z0-9_-]{43}$/);
    expect(created.key).toContain(created.api_key.lookup_id);
    expect(created.api_key).toMatchObject({ name: 'portal-eu', scopes: ['allocate'], created_by: 'admin' });

    const row = await h.db
      .selectFrom('api_keys')
      .selectAll()
      .where('id', '=', created.api_key.id)
      .executeTakeFirstOrThrow();
    expect(JSON.stringify(row)).not.toContain(created.key.split('_').pop());
    expect(row.secret_digest).toHaveLength(32);

    const list = await h.api('GET', '/api/database/admin/api-keys', undefined, h.adminToken);
    expect(list.status).toBe(200);
    const listed = list.body.api_keys.find((k: { id: string }) => k.id === created.api_key.id);
    expect(listed).toMatchObject({ name: 'portal-eu', lookup_id: created.api_key.lookup_id });
    expect(JSON.stringify(list.body)).not.toContain(created.key);
    expect(Object.keys(listed)).not.toContain('secret_digest');

    const audit = await h.db
      .selectFrom('audit_events')
      .select(['actor', 'details'])
      .where('action', '=', 'api_key.created')
      .execute();
    expect(audit.some((e) => (e.details as { api_key_id?: string }).api_key_id === created.api_key.id)).toBe(
      true,
    );
    expect(JSON.stringify(audit)).not.toContain(created.key);
  });

  it.each([
    [{ name: 'x', scopes: ['root'] }, 'body/scopes'],
    [{ name: 'x', scopes: [] }, 'body/scopes'],
    [{ name: 'x', scopes: ['admin', 'admin'] }, 'body/scopes'],
    [{ name: 'Upper Case', scopes: ['admin'] }, 'body/name'],
    [{ name: 'x', scopes: ['admin'], expires_at: '2001-01-01T00:00:00Z' }, 'body/expires_at'],
    [{ name: 'x', scopes: ['admin'], expires_at: 'tomorrow' }, 'body/expires_at'],
    [{ name: 'x', scopes: ['admin'], key: 'tdbk_mine' }, 'unknown field'],
  ])('refuses %j with 400 and makes nothing', async (body, message) => {
    const before = await h.db.selectFrom('api_keys').select('id').execute();
    const res = await h.api('POST', '/api/database/admin/api-keys', body, h.adminToken);
    expect(res.status).toBe(400);
    expect(res.body.message).toContain(message);
    expect(await h.db.selectFrom('api_keys').select('id').execute()).toEqual(before);
  });

  it('needs the admin scope to create or revoke, admin:read to list', async () => {
    const reader = await createKey({ name: 'dashboard', scopes: ['admin:read'] });
    const asReader = (method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown) =>
      h.api(method, url, body, reader.key);
    expect((await asReader('GET', '/api/database/admin/api-keys')).status).toBe(200);
    expect(
      (await asReader('POST', '/api/database/admin/api-keys', { name: 'x', scopes: ['admin'] })).status,
    ).toBe(403);
    expect((await asReader('DELETE', `/api/database/admin/api-keys/${reader.api_key.id}`)).status).toBe(403);
    expect((await h.api('GET', '/api/database/admin/api-keys', undefined, h.allocateToken)).status).toBe(403);
  });
});

describe('using keys', () => {
  it('admin:read reads every admin view and changes nothing', async () => {
    const { key } = await createKey({ name: 'readonly', scopes: ['admin:read'] });
    const pool = h.servers[0]!.id;
    for (const url of [
      '/api/database/admin/pools',
      `/api/database/admin/pools/${pool}`,
      '/api/database/admin/stats',
    ]) {
      expect((await h.api('GET', url, undefined, key)).status, url).toBe(200);
    }
    const before = await h.db.selectFrom('db_servers').select(['id', 'status']).execute();
    for (const [method, url, body] of [
      ['POST', `/api/database/admin/pools/${pool}/cordon`, undefined],
      ['POST', `/api/database/admin/pools/${pool}/drain`, undefined],
      ['POST', `/api/database/admin/pools/${pool}/health-check`, undefined],
      ['POST', '/api/database/admin/pools', { max_instances: 3 }],
      ['DELETE', `/api/database/admin/pools/${pool}`, undefined],
      ['POST', '/api/database/allocate', newIds()],
    ] as const) {
      const res = await h.api(method, url, body, key);
      expect(res.status, `${method} ${url}`).toBe(403);
    }
    expect(await h.db.selectFrom('db_servers').select(['id', 'status']).execute()).toEqual(before);
  });

  it('an allocate key allocates; an admin key also reads; actions are audited with the key name', async () => {
    const { key: allocateKey } = await createKey({ name: 'signup', scopes: ['allocate'] });
    const ids = newIds();
    const allocated = await h.api('POST', '/api/database/allocate', ids, allocateKey);
    expect(allocated.status, JSON.stringify(allocated.body)).toBe(200);
    expect((await h.api('GET', '/api/database/admin/stats', undefined, allocateKey)).status).toBe(403);

    const { key: adminKey } = await createKey({ name: 'ops', scopes: ['admin'] });
    const pool = h.servers[0]!.id;
    expect((await h.api('GET', '/api/database/admin/stats', undefined, adminKey)).status).toBe(200);
    expect(
      (await h.api('POST', `/api/database/admin/pools/${pool}/cordon`, undefined, adminKey)).status,
    ).toBe(200);
    expect(
      (await h.api('POST', `/api/database/admin/pools/${pool}/uncordon`, undefined, adminKey)).status,
    ).toBe(200);
    const actors = await h.db
      .selectFrom('audit_events')
      .select(['actor', 'action'])
      .where('db_server_id', '=', pool)
      .where('action', 'in', ['server.cordon', 'server.uncordon'])
      .execute();
    expect(actors.map((a) => a.actor)).toEqual(['key:ops', 'key:ops']);

    const used = await h.db
      .selectFrom('api_keys')
      .select('last_used_at')
      .where('name', '=', 'ops')
      .executeTakeFirstOrThrow();
    expect(used.last_used_at).toBeInstanceOf(Date);
  });

  it('the configured tokens keep working beside the keys', async () => {
    expect((await h.api('GET', '/api/database/admin/stats', undefined, h.adminToken)).status).toBe(200);
    expect((await h.api('POST', '/api/database/allocate', newIds(), h.allocateToken)).status).toBe(200);
  });

  it('refuses keys that are malformed, unknown, or right in shape but wrong in secret', async () => {
    const { key } = await createKey({ name: 'shape', scopes: ['admin'] });
    const wrongSecret = `${key.slice(0, -4)}${key.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
    for (const token of [
      'tdbk_',
      'tdbk_aaaaaaaaaaaaaaaa_short',
      wrongSecret,
      key.replace(/_[a-z2-7]{16}_/, '_aaaaaaaaaaaaaaaa_'),
    ]) {
      expect(
        (await h.api('GET', '/api/database/admin/stats', undefined, token)).status,
        token.slice(0, 24),
      ).toBe(401);
    }
  });
});

describe('expiry, revoke and rotation, without a restart', () => {
  it('refuses a key once it has expired, also when it was just used', async () => {
    const { key } = await createKey({
      name: 'short-lived',
      scopes: ['admin:read'],
      expires_at: new Date(Date.now() + 1_500).toISOString(),
    });
    expect((await h.api('GET', '/api/database/admin/stats', undefined, key)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1_700));
    expect((await h.api('GET', '/api/database/admin/stats', undefined, key)).status).toBe(401);
  });

  it('lets two keys of one name overlap, and refuses a revoked one at once', async () => {
    const old = await createKey({ name: 'portal-rotating', scopes: ['allocate'] });
    const fresh = await createKey({ name: 'portal-rotating', scopes: ['allocate'] });
    for (const { key } of [old, fresh]) {
      expect((await h.api('POST', '/api/database/allocate', newIds(), key)).status).toBe(200);
    }
    const revoked = await h.api(
      'DELETE',
      `/api/database/admin/api-keys/${old.api_key.id}`,
      undefined,
      h.adminToken,
    );
    expect(revoked.status).toBe(200);
    expect(revoked.body.api_key).toMatchObject({ revoked_by: 'admin', revoked_at: expect.any(String) });
    expect((await h.api('POST', '/api/database/allocate', newIds(), old.key)).status).toBe(401);
    expect((await h.api('POST', '/api/database/allocate', newIds(), fresh.key)).status).toBe(200);
    // a second revoke finds no live key
    expect(
      (await h.api('DELETE', `/api/database/admin/api-keys/${old.api_key.id}`, undefined, h.adminToken))
        .status,
    ).toBe(404);
    const listed = await h.api('GET', '/api/database/admin/api-keys', undefined, h.adminToken);
    expect(listed.body.api_keys.map((k: { id: string }) => k.id)).not.toContain(old.api_key.id);
    const all = await h.api(
      'GET',
      '/api/database/admin/api-keys?include_revoked=true',
      undefined,
      h.adminToken,
    );
    expect(all.body.api_keys.map((k: { id: string }) => k.id)).toContain(old.api_key.id);
  });

  it('introspection (allocate scope) tells whether a key is usable and for what', async () => {
    const portal = await createKey({ name: 'portal-main', scopes: ['portal'] });
    const ask = (key: string) => h.api('POST', '/api/database/api-keys/introspect', { key }, h.allocateToken);
    expect((await ask(portal.key)).body).toMatchObject({
      active: true,
      name: 'key:portal-main',
      scopes: ['portal'],
    });
    expect((await ask('not-a-key')).body).toEqual({ active: false });
    await h.api('DELETE', `/api/database/admin/api-keys/${portal.api_key.id}`, undefined, h.adminToken);
    expect((await ask(portal.key)).body).toEqual({ active: false });
  });
});

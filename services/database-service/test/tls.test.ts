// Servers without a fleet-CA certificate (registered from outside, or created before TLS came)
// answer as before: no sslmode, no CA; there is no CA to fetch until tenantdb provisions a server.
// The TLS answers of provisioned servers are tested end to end in database-worker's tls.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canLogin, type Harness, newIds, startHarness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ pools: [5] });
});
afterAll(async () => {
  await h?.close();
});

describe('allocate answers for a server without a certificate', () => {
  it('carry no sslmode and no CA, and the tenant logs in as before', async () => {
    const res = await h.api('POST', '/api/database/allocate', newIds());
    expect(res.status).toBe(200);
    expect(res.body).not.toHaveProperty('sslmode');
    expect(res.body).not.toHaveProperty('ssl_root_cert');
    expect(await canLogin(res.body)).toBe(true);
  });

  it('GET /api/database/ca.pem is 404 before any CA exists, and needs a token', async () => {
    const res = await h.api('GET', '/api/database/ca.pem');
    expect(res.status).toBe(404);
    expect(res.body.message).toMatch(/no fleet CA yet/);
    expect((await h.api('GET', '/api/database/ca.pem', undefined, null)).status).toBe(401);
  });
});

// Operators with OIDC: bearer JWTs from a real OpenID provider (`oidc-provider`, certified,
// started here on loopback) issued by the client-credentials grant as JWT access tokens for
// database-service's audience. Scopes come from the token's `scope` claim. An expired token, one
// for another audience and one signed by a key the issuer has rotated out are refused; a token
// signed by the issuer's new key is accepted without a restart.
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { freePort } from '@tenantdb/testkit';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './harness';

const AUDIENCE = 'https://tenantdb.test/api';
const OTHER_AUDIENCE = 'https://other.test/api';
const SHORT_LIVED = `${AUDIENCE}/short`;
const CLIENT = { id: 'ops-cli', secret: randomBytes(24).toString('hex') };

let port: number;
let issuer: string;
let idp: Server | undefined;
let h: Harness;

async function signingKey(kid: string) {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' };
}

/** (Re)starts the provider on the same address with these signing keys (the first signs). */
async function startIssuer(keys: object[]) {
  if (idp) await new Promise((resolve) => idp!.close(resolve));
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT.id,
        client_secret: CLIENT.secret,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        id_token_signed_response_alg: 'ES256',
      },
    ],
    jwks: { keys },
    features: {
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => AUDIENCE,
        getResourceServerInfo: (_ctx: unknown, resource: string) => ({
          scope: 'admin admin:read unmapped',
          // AUDIENCE/short: tokens for database-service's audience that live three seconds
          audience: resource === SHORT_LIVED ? AUDIENCE : resource,
          accessTokenTTL: resource === SHORT_LIVED ? 3 : 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  });
  idp = provider.listen(port, '127.0.0.1');
  await new Promise((resolve) => idp!.once('listening', resolve));
}

async function tokenFor(scope: string, resource = AUDIENCE): Promise<string> {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${CLIENT.id}:${CLIENT.secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource }),
  });
  const body = (await res.json()) as { access_token?: string };
  expect(res.status, JSON.stringify(body)).toBe(200);
  h?.remember(body.access_token!);
  return body.access_token!;
}

beforeAll(async () => {
  port = await freePort();
  issuer = `http://127.0.0.1:${port}`;
  await startIssuer([await signingKey('k1')]);
  h = await startHarness({
    pools: [5],
    env: {
      TENANTDB_OIDC_ISSUER: issuer,
      TENANTDB_OIDC_AUDIENCE: AUDIENCE,
      TENANTDB_OIDC_CLOCK_SKEW_SECONDS: '0',
      TENANTDB_OIDC_JWKS_CACHE_SECONDS: '1',
    },
  });
});
afterAll(async () => {
  await h?.close();
  if (idp) await new Promise((resolve) => idp!.close(resolve));
});

const stats = (token: string) => h.api('GET', '/api/database/admin/stats', undefined, token);
const cordon = (token: string) =>
  h.api('POST', `/api/database/admin/pools/${h.servers[0]!.id}/cordon`, undefined, token);

describe('OIDC bearer tokens', () => {
  it('grants the scopes the token carries, and audits with the subject', async () => {
    const reader = await tokenFor('admin:read');
    expect((await stats(reader)).status).toBe(200);
    expect((await cordon(reader)).status).toBe(403);

    const admin = await tokenFor('admin');
    expect((await stats(admin)).status).toBe(200);
    expect((await cordon(admin)).status).toBe(200);
    const audit = await h.db
      .selectFrom('audit_events')
      .select('actor')
      .where('action', '=', 'server.cordon')
      .executeTakeFirstOrThrow();
    expect(audit.actor).toBe(`oidc:${CLIENT.id}`);

    // a scope value the map does not list grants nothing
    expect((await stats(await tokenFor('unmapped'))).status).toBe(403);
  });

  it('refuses a token for another audience, and one whose claims were changed', async () => {
    expect((await stats(await tokenFor('admin', OTHER_AUDIENCE))).status).toBe(401);

    const [header, payload, signature] = (await tokenFor('admin:read')).split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString());
    const widened = Buffer.from(JSON.stringify({ ...claims, scope: 'admin' })).toString('base64url');
    expect((await stats(`${header}.${widened}.${signature}`)).status).toBe(401);
  });

  it('refuses a token once it has expired (no clock skew configured here)', async () => {
    const token = await tokenFor('admin', SHORT_LIVED);
    const { exp, aud } = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    expect(aud).toBe(AUDIENCE);
    expect((await stats(token)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, exp * 1000 - Date.now() + 1_100));
    expect((await stats(token)).status).toBe(401);
  });

  it('follows a key rotation at the issuer without a restart', async () => {
    const before = await tokenFor('admin:read');
    expect((await stats(before)).status).toBe(200);

    await startIssuer([await signingKey('k2')]); // k1 is gone
    await new Promise((resolve) => setTimeout(resolve, 1_200)); // past the key cache's cooldown
    const after = await tokenFor('admin:read');
    expect(JSON.parse(Buffer.from(after.split('.')[0]!, 'base64url').toString()).kid).toBe('k2');
    expect((await stats(after)).status).toBe(200);
    // the old key's tokens are refused once the issuer no longer publishes it
    expect((await stats(before)).status).toBe(401);
  });

  it('the configured tokens keep working beside OIDC', async () => {
    expect((await stats(h.adminToken)).status).toBe(200);
  });
});

// Operators signing in with their organisation's identity provider: bearer JWTs from one
// configured OpenID issuer, checked with `jose` against the issuer's published keys (found by
// discovery, refetched when a token names a key not seen yet, so the issuer can rotate keys
// without a restart), for one audience, with a bounded clock skew. Scopes come from one claim
// (`scope`, a space-separated string, or an array claim such as `roles`), mapped to tenantdb's.
import { createRemoteJWKSet, errors, type JWTPayload, jwtVerify } from 'jose';
import type { Principal, TokenLookup } from './auth';
import { UnavailableError } from './errors';

export interface OidcOptions {
  issuer: string;
  audience: string;
  /** The claim that carries the caller's scopes or roles. */
  scopeClaim: string;
  /** Claim value → tenantdb scope; values not listed give nothing. */
  scopeMap: Readonly<Record<string, string>>;
  clockSkewSeconds: number;
  /** How long the issuer's keys are kept before they are fetched again. */
  jwksCacheSeconds: number;
}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

export function createOidcLookup(opts: OidcOptions): TokenLookup {
  const issuer = opts.issuer.replace(/\/+$/, '');
  let keys: Promise<ReturnType<typeof createRemoteJWKSet>> | undefined;

  /** The issuer's key set, from its discovery document (fetched once; again after a failure). */
  function keySet(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    keys ??= (async () => {
      const response = await fetch(`${issuer}/.well-known/openid-configuration`, {
        signal: AbortSignal.timeout(5_000),
        redirect: 'error',
      });
      if (!response.ok) throw new Error(`discovery answered ${response.status}`);
      const discovery = (await response.json()) as { issuer?: string; jwks_uri?: string };
      if (discovery.issuer?.replace(/\/+$/, '') !== issuer || !discovery.jwks_uri)
        throw new Error('the discovery document names another issuer or no jwks_uri');
      return createRemoteJWKSet(new URL(discovery.jwks_uri), {
        cacheMaxAge: opts.jwksCacheSeconds * 1000,
        cooldownDuration: Math.min(30, opts.jwksCacheSeconds) * 1000,
        timeoutDuration: 5_000,
      });
    })().catch((err) => {
      keys = undefined;
      throw err;
    });
    return keys;
  }

  function scopesOf(payload: JWTPayload): string[] {
    const claim = payload[opts.scopeClaim];
    const values = typeof claim === 'string' ? claim.split(' ') : Array.isArray(claim) ? claim : [];
    const scopes = values.flatMap((v) =>
      typeof v === 'string' && opts.scopeMap[v] ? [opts.scopeMap[v]] : [],
    );
    return [...new Set(scopes)];
  }

  return async (token): Promise<Principal | undefined> => {
    if (!JWT_SHAPE.test(token)) return undefined;
    let jwks: ReturnType<typeof createRemoteJWKSet>;
    try {
      jwks = await keySet();
    } catch {
      throw new UnavailableError('cannot reach the OpenID issuer to check this token; retry', 2);
    }
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer: [issuer, `${issuer}/`],
        audience: opts.audience,
        clockTolerance: opts.clockSkewSeconds,
        algorithms: ALGORITHMS,
        requiredClaims: ['exp', 'sub'],
      });
      return { name: `oidc:${payload.sub}`, scopes: scopesOf(payload) };
    } catch (err) {
      if (err instanceof errors.JWKSTimeout || !(err instanceof errors.JOSEError)) {
        throw new UnavailableError('cannot reach the OpenID issuer to check this token; retry', 2);
      }
      return undefined; // expired, not yet valid, another audience or issuer, unknown key, bad signature
    }
  };
}

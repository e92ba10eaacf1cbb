// Bearer tokens: from configuration (bootstrap grants, each with a name for audit and rate
// limiting, and scopes), then from lookups (named API keys in the catalog, OIDC). Routes declare
// the scope they need in `config.scope`; routes without one are public; `admin` implies
// `admin:read`. Failed authentications are counted per client address (AuthFailureLimiter).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ForbiddenError, HttpError, UnauthorizedError } from './errors';

export interface TokenGrant {
  name: string;
  token: string;
  scopes: readonly string[];
}

export interface Principal {
  name: string;
  scopes: readonly string[];
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    scope?: string;
  }
}

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Finds the grant for a presented token, comparing against every grant in constant time. */
export function createTokenMatcher(
  grants: readonly TokenGrant[],
): (presented: string) => Principal | undefined {
  const known = grants.map((g) => ({
    digest: digest(g.token),
    principal: { name: g.name, scopes: g.scopes },
  }));
  return (presented) => {
    const candidate = digest(presented);
    let match: Principal | undefined;
    for (const k of known) if (timingSafeEqual(k.digest, candidate)) match = k.principal;
    return match;
  };
}

/**
 * Failed authentications (401 and 403) counted per client address. A client over its budget is
 * answered 429 before its token is even looked at, until its window ends: guessing tokens, or a
 * client stuck on a revoked one, costs one counter read per request and nothing else.
 */
export interface AuthFailureLimiter {
  /** Seconds until the address may try again, or 0 when it may try now. */
  blockedFor(request: FastifyRequest): Promise<number>;
  count(request: FastifyRequest): Promise<void>;
}

/**
 * Finds the principal of a token that is not one of the configured grants (a named API key, an
 * OIDC token), or undefined. Called only for tokens the configured grants do not match.
 */
export type TokenLookup = (token: string) => Promise<Principal | undefined>;

/** Scopes that come with another: whoever may change the fleet may read it. */
const IMPLIED_BY: Record<string, string> = { 'admin:read': 'admin' };

export function hasScope(principal: Principal, scope: string): boolean {
  const implying = IMPLIED_BY[scope];
  return principal.scopes.includes(scope) || (implying !== undefined && principal.scopes.includes(implying));
}

export function registerAuth(
  app: FastifyInstance,
  grants: readonly TokenGrant[],
  failures?: AuthFailureLimiter,
  lookups: readonly TokenLookup[] = [],
): void {
  const matchGrant = createTokenMatcher(grants);
  const match = async (token: string): Promise<Principal | undefined> => {
    const granted = matchGrant(token);
    if (granted) return granted;
    for (const lookup of lookups) {
      const found = await lookup(token);
      if (found) return found;
    }
    return undefined;
  };
  const refuse = async (request: FastifyRequest, error: HttpError): Promise<never> => {
    await failures?.count(request);
    throw error;
  };
  app.addHook('onRequest', async (request: FastifyRequest) => {
    const scope = request.routeOptions.config?.scope;
    if (!scope) return;
    const wait = (await failures?.blockedFor(request)) ?? 0;
    if (wait > 0) {
      throw new HttpError(429, `too many failed authentications from this address; retry in ${wait} s`, {
        'retry-after': String(wait),
      });
    }
    const header = request.headers.authorization;
    // The scheme is case-insensitive (RFC 7235); the token is not.
    const token = header && /^bearer /i.test(header) ? header.slice(7).trim() : undefined;
    const principal = token ? await match(token) : undefined;
    if (!principal) return refuse(request, new UnauthorizedError());
    request.principal = principal;
    if (!hasScope(principal, scope)) {
      return refuse(request, new ForbiddenError(`this route needs the "${scope}" scope`));
    }
  });
}

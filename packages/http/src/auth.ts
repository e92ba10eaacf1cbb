// Bearer tokens from configuration, each with a name (for audit and rate limiting) and scopes.
// Routes declare the scope they need in `config.scope`; routes without one are public.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ForbiddenError, UnauthorizedError } from './errors';

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

export function registerAuth(app: FastifyInstance, grants: readonly TokenGrant[]): void {
  const match = createTokenMatcher(grants);
  app.addHook('onRequest', async (request: FastifyRequest) => {
    const scope = request.routeOptions.config?.scope;
    if (!scope) return;
    const header = request.headers.authorization;
    // The scheme is case-insensitive (RFC 7235); the token is not.
    const token = header && /^bearer /i.test(header) ? header.slice(7).trim() : undefined;
    const principal = token ? match(token) : undefined;
    if (!principal) throw new UnauthorizedError();
    request.principal = principal;
    if (!principal.scopes.includes(scope)) throw new ForbiddenError(`this route needs the "${scope}" scope`);
  });
}

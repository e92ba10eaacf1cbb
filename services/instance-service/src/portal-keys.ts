// Named API keys with the `portal` scope, made through database-service's admin API: the catalog
// that holds them is database-service's, so instance-service asks it (introspection, with its
// allocate token) and remembers the answer for TENANTDB_API_KEY_CACHE_MS. A revoke reaches
// instance-service within that time. While database-service cannot answer, a key cannot be
// checked: 503 with Retry-After (the configured portal token keeps working).
import type { DatabaseServiceClient } from '@tenantdb/contracts';
import { createCheckedTokens, type Principal, type TokenLookup, UnavailableError } from '@tenantdb/http';
import { parseApiKey } from '@tenantdb/secrets';

export function createPortalKeyLookup(deps: {
  databaseService: Pick<DatabaseServiceClient, 'introspectKey'>;
  cacheMs: number;
}): TokenLookup {
  const checked = createCheckedTokens<Principal>({ ttlMs: deps.cacheMs });
  return async (token) => {
    const parsed = parseApiKey(token);
    if (!parsed) return undefined;
    const digest = parsed.digest.toString('base64');
    const hit = checked.get(digest);
    if (hit) return hit.principal;
    let answer: Awaited<ReturnType<DatabaseServiceClient['introspectKey']>>;
    try {
      answer = await deps.databaseService.introspectKey(token);
    } catch {
      throw new UnavailableError(
        'cannot check this API key now (database-service does not answer); retry',
        2,
      );
    }
    if (!answer.active || !answer.name || !answer.scopes) return undefined;
    // Only what instance-service serves: a key without `portal` authenticates but is refused (403).
    const principal = { name: answer.name, scopes: answer.scopes.filter((s) => s === 'portal') };
    checked.set(digest, principal, undefined, answer.expires_at ? new Date(answer.expires_at) : null);
    return principal;
  };
}

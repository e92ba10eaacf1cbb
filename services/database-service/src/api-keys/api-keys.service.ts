// Named API keys: made, listed and revoked through the admin API, and checked on every request
// that presents one (as a token lookup of the HTTP app). A checked key is remembered for a few
// seconds (TENANTDB_API_KEY_CACHE_MS), so a busy key costs no catalog read per request; a revoke
// is at once on the replica that answered it and within that time on the others.
import type { ApiKeysRepo, ApiKeyView } from '@tenantdb/catalog';
import type { ApiKey, CreateApiKeyRequest, IntrospectKeyAnswer } from '@tenantdb/contracts';
import { createCheckedTokens, NotFoundError, type Principal, type RequestContext } from '@tenantdb/http';
import type { Logger } from '@tenantdb/observability';
import { apiKeyMatches, newApiKey, parseApiKey } from '@tenantdb/secrets';

export type ApiKeysService = ReturnType<typeof createApiKeysService>;

export interface ApiKeysDeps {
  apiKeys: ApiKeysRepo;
  logger: Logger;
  config: { cacheMs: number };
}

/** How a key is named where a token's name is used (audit actor, rate-limit key, request log). */
export const keyPrincipalName = (name: string) => `key:${name}`;

type KeyPrincipal = Principal & { expiresAt: Date | null };

const TOUCH_EVERY_MS = 60_000;

export function createApiKeysService(deps: ApiKeysDeps) {
  const { apiKeys, logger, config } = deps;
  const checked = createCheckedTokens<KeyPrincipal, string>({ ttlMs: config.cacheMs });
  const touched = new Map<string, number>();

  function view(row: ApiKeyView): ApiKey {
    return {
      id: row.id,
      name: row.name,
      lookup_id: row.lookup_id,
      scopes: row.scopes,
      created_by: row.created_by,
      created_at: row.created_at.toISOString(),
      expires_at: row.expires_at?.toISOString() ?? null,
      last_used_at: row.last_used_at?.toISOString() ?? null,
      revoked_at: row.revoked_at?.toISOString() ?? null,
      revoked_by: row.revoked_by,
    };
  }

  function noteUse(keyId: string): void {
    const now = Date.now();
    if ((touched.get(keyId) ?? 0) > now - TOUCH_EVERY_MS) return;
    touched.set(keyId, now);
    apiKeys.touch(keyId).catch((err) => logger.warn({ err, api_key_id: keyId }, 'could not note a key use'));
  }

  /** The principal of a presented key, or undefined (not a key, unknown, revoked or expired). */
  async function verify(token: string): Promise<KeyPrincipal | undefined> {
    const parsed = parseApiKey(token);
    if (!parsed) return undefined;
    const digest = parsed.digest.toString('base64');
    const hit = checked.get(digest);
    if (hit) {
      noteUse(hit.meta);
      return hit.principal;
    }
    const row = await apiKeys.findUsable(parsed.lookupId);
    if (!row || !apiKeyMatches(parsed, row.secret_digest)) return undefined;
    const principal = { name: keyPrincipalName(row.name), scopes: row.scopes, expiresAt: row.expires_at };
    checked.set(digest, principal, row.id, row.expires_at);
    noteUse(row.id);
    return principal;
  }

  return {
    /** For the HTTP app's token lookups. */
    lookup: (token: string): Promise<Principal | undefined> => verify(token),

    async create(
      request: CreateApiKeyRequest,
      ctx: RequestContext,
    ): Promise<{ api_key: ApiKey; key: string }> {
      const made = newApiKey();
      const row = await apiKeys.create(
        {
          name: request.name,
          lookup_id: made.lookupId,
          secret_digest: made.digest,
          scopes: request.scopes,
          expires_at: request.expires_at ? new Date(request.expires_at) : null,
          created_by: ctx.actor,
        },
        (created) => ({
          actor: ctx.actor,
          action: 'api_key.created',
          request_id: ctx.requestId,
          details: {
            api_key_id: created.id,
            name: created.name,
            lookup_id: created.lookup_id,
            scopes: created.scopes,
          },
        }),
      );
      return { api_key: view(row), key: made.key };
    },

    async list(includeRevoked: boolean): Promise<ApiKey[]> {
      return (await apiKeys.list({ includeRevoked })).map(view);
    },

    async revoke(id: string, ctx: RequestContext): Promise<ApiKey> {
      const row = await apiKeys.revoke(id, ctx.actor, (revoked) => ({
        actor: ctx.actor,
        action: 'api_key.revoked',
        request_id: ctx.requestId,
        details: { api_key_id: revoked.id, name: revoked.name, lookup_id: revoked.lookup_id },
      }));
      if (!row) throw new NotFoundError('no live API key with this id');
      checked.forget((keyId) => keyId === id);
      return view(row);
    },

    /** For instance-service, which is shown portal keys: is this one usable, and for what. */
    async introspect(key: string): Promise<IntrospectKeyAnswer> {
      const principal = await verify(key);
      if (!principal) return { active: false };
      return {
        active: true,
        name: principal.name,
        scopes: [...principal.scopes] as IntrospectKeyAnswer['scopes'],
        expires_at: principal.expiresAt?.toISOString() ?? null,
      };
    },
  };
}

// Named API keys (database-service's admin API) and their introspection by instance-service.
import { z } from 'zod';
import { uuid } from './common';

export const API_KEY_SCOPE = z.enum(['allocate', 'admin', 'admin:read', 'portal']);

export const CreateApiKeyRequest = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'lowercase letters, digits, ".", "_" or "-", at most 63')
    .describe('who uses the key; two live keys may share a name while a consumer rotates'),
  scopes: z
    .array(API_KEY_SCOPE)
    .min(1)
    .max(4)
    .refine((scopes) => new Set(scopes).size === scopes.length, 'each scope at most once'),
  expires_at: z.iso
    .datetime({ offset: true })
    .refine((at) => Date.parse(at) > Date.now(), 'must be in the future')
    .optional()
    .describe('after this the key is refused; none: until revoked'),
});
export type CreateApiKeyRequest = z.infer<typeof CreateApiKeyRequest>;

export const ApiKey = z.object({
  id: uuid,
  name: z.string(),
  lookup_id: z.string().describe('the public part of the key (tdbk_<lookup_id>_…): names it in logs'),
  scopes: z.array(API_KEY_SCOPE),
  created_by: z.string(),
  created_at: z.iso.datetime(),
  expires_at: z.iso.datetime().nullable(),
  last_used_at: z.iso.datetime().nullable().describe('to the minute'),
  revoked_at: z.iso.datetime().nullable(),
  revoked_by: z.string().nullable(),
});
export type ApiKey = z.infer<typeof ApiKey>;

export const ApiKeyCreated = z.object({
  api_key: ApiKey,
  key: z.string().describe('the key itself: shown this once, stored only as a digest'),
});
export const ApiKeyList = z.object({ api_keys: z.array(ApiKey) });
export const ApiKeysQuery = z.strictObject({
  include_revoked: z.enum(['true', 'false']).default('false'),
});
export const ApiKeyParams = z.strictObject({ id: uuid });

/** What instance-service asks about a portal key it was shown (allocate scope). */
export const IntrospectKeyRequest = z.strictObject({ key: z.string().min(1).max(200) });
export const IntrospectKeyAnswer = z.object({
  active: z.boolean(),
  name: z.string().optional(),
  scopes: z.array(API_KEY_SCOPE).optional(),
  expires_at: z.iso.datetime().nullable().optional(),
});
export type IntrospectKeyAnswer = z.infer<typeof IntrospectKeyAnswer>;

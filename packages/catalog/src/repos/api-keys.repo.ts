// Named API keys (table api_keys): the digest of each key, its scopes, expiry and use. The key
// itself is made and checked by the caller (packages/http); nothing here sees it.
import { sql } from 'kysely';
import type { CatalogDb } from '../db';
import type { ApiKey, ApiKeyScope, AuditEvent } from '../types';

export type ApiKeysRepo = ReturnType<typeof createApiKeysRepo>;
/** What a list shows of a key: everything but its digest. */
export type ApiKeyView = Omit<ApiKey, 'secret_digest'>;

const VIEW = [
  'id',
  'name',
  'lookup_id',
  'scopes',
  'created_by',
  'created_at',
  'expires_at',
  'last_used_at',
  'revoked_at',
  'revoked_by',
] as const;

/** How often a key's last_used_at is written at most: a busy key is not one UPDATE per request. */
const LAST_USED_RESOLUTION = '1 minute';

export function createApiKeysRepo(db: CatalogDb) {
  return {
    /** The key and its audit event, in one transaction. */
    async create(
      key: {
        name: string;
        lookup_id: string;
        secret_digest: Buffer;
        scopes: ApiKeyScope[];
        expires_at: Date | null;
        created_by: string;
      },
      audit: (row: ApiKeyView) => AuditEvent,
    ): Promise<ApiKeyView> {
      return db.transaction().execute(async (trx) => {
        const row = await trx.insertInto('api_keys').values(key).returning(VIEW).executeTakeFirstOrThrow();
        await trx.insertInto('audit_events').values(audit(row)).execute();
        return row;
      });
    },

    /** A key that may be used now (not revoked, not expired), by its public part. */
    findUsable(lookupId: string): Promise<ApiKey | undefined> {
      return db
        .selectFrom('api_keys')
        .selectAll()
        .where('lookup_id', '=', lookupId)
        .where('revoked_at', 'is', null)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', sql<Date>`now()`)]))
        .executeTakeFirst();
    },

    /** Every key, newest first; revoked ones only when asked. */
    list(opts: { includeRevoked: boolean }): Promise<ApiKeyView[]> {
      let query = db.selectFrom('api_keys').select(VIEW).orderBy('created_at', 'desc').orderBy('id');
      if (!opts.includeRevoked) query = query.where('revoked_at', 'is', null);
      return query.execute();
    },

    /** Revokes a live key and records it; undefined when there is no live key of that id. */
    revoke(id: string, by: string, audit: (row: ApiKeyView) => AuditEvent): Promise<ApiKeyView | undefined> {
      return db.transaction().execute(async (trx) => {
        const row = await trx
          .updateTable('api_keys')
          .set({ revoked_at: sql`now()`, revoked_by: by })
          .where('id', '=', id)
          .where('revoked_at', 'is', null)
          .returning(VIEW)
          .executeTakeFirst();
        if (row) await trx.insertInto('audit_events').values(audit(row)).execute();
        return row;
      });
    },

    /** Notes a use, at most once per LAST_USED_RESOLUTION per key. */
    async touch(id: string): Promise<void> {
      await db
        .updateTable('api_keys')
        .set({ last_used_at: sql`now()` })
        .where('id', '=', id)
        .where((eb) =>
          eb.or([
            eb('last_used_at', 'is', null),
            eb('last_used_at', '<', sql<Date>`now() - ${LAST_USED_RESOLUTION}::interval`),
          ]),
        )
        .execute();
    },
  };
}

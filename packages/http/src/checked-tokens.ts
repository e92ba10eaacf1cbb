// What a token lookup remembers of tokens it checked: the principal, until a deadline (the cache
// time, or the key's own expiry when sooner), keyed by the token's digest (never the token).
// Bounded: past `limit` entries it starts again empty.
import type { Principal } from './auth';

export type CheckedTokens<P extends Principal, M = undefined> = ReturnType<typeof createCheckedTokens<P, M>>;

export function createCheckedTokens<P extends Principal, M = undefined>(opts: {
  ttlMs: number;
  limit?: number;
}) {
  const limit = opts.limit ?? 10_000;
  const entries = new Map<string, { principal: P; meta: M; until: number }>();
  return {
    get(digest: string): { principal: P; meta: M } | undefined {
      const hit = entries.get(digest);
      if (hit && hit.until > Date.now()) return hit;
      entries.delete(digest);
      return undefined;
    },
    /** Remembers a principal for ttlMs, or until `expiresAt` when that is sooner. */
    set(digest: string, principal: P, meta: M, expiresAt: Date | null): void {
      if (entries.size >= limit) entries.clear();
      const until = Math.min(Date.now() + opts.ttlMs, expiresAt?.getTime() ?? Number.POSITIVE_INFINITY);
      entries.set(digest, { principal, meta, until });
    },
    /** Forgets every entry whose meta matches (a revoked key). */
    forget(matches: (meta: M) => boolean): void {
      for (const [digest, entry] of entries) if (matches(entry.meta)) entries.delete(digest);
    },
  };
}

// The catalog's constraints that callers meet as answers rather than errors: only this package
// names them, and its repositories turn them into typed results.

/** At most one live (slot-holding) tenant row per instance: a partial unique index on instance_id. */
export const LIVE_INSTANCE_INDEX = 'tenant_databases_live_instance';

/** Is `err` Postgres refusing a second live row for an instance (unique violation on that index)? */
export function isLiveInstanceViolation(err: unknown): boolean {
  const e = err as { code?: string; constraint?: string } | null;
  return e?.code === '23505' && e.constraint === LIVE_INSTANCE_INDEX;
}

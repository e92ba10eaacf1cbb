// Storage quotas and session guardrails per plan (issue 17), and retirement: a retired plan takes
// no new allocations and stays for the tenants that still name it. NULL quota: no quota; NULL
// guardrail: the server's default.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE plans
      ADD COLUMN storage_quota_mb integer CHECK (storage_quota_mb BETWEEN 1 AND 16777216),
      ADD COLUMN quota_warn_fraction numeric(3, 2) NOT NULL DEFAULT 0.8
        CHECK (quota_warn_fraction > 0 AND quota_warn_fraction <= 1),
      ADD COLUMN quota_lift_fraction numeric(3, 2) NOT NULL DEFAULT 0.7
        CHECK (quota_lift_fraction > 0),
      ADD COLUMN quota_grace_seconds integer NOT NULL DEFAULT 86400
        CHECK (quota_grace_seconds BETWEEN 0 AND 31536000),
      ADD COLUMN statement_timeout_ms integer CHECK (statement_timeout_ms BETWEEN 1 AND 86400000),
      ADD COLUMN idle_in_transaction_timeout_ms integer
        CHECK (idle_in_transaction_timeout_ms BETWEEN 1 AND 86400000),
      ADD COLUMN temp_file_limit_mb integer CHECK (temp_file_limit_mb BETWEEN 1 AND 1048576),
      ADD COLUMN work_mem_mb integer CHECK (work_mem_mb BETWEEN 1 AND 2097151),
      ADD COLUMN retired_at timestamptz,
      ADD CONSTRAINT plans_lift_below_warn CHECK (quota_lift_fraction <= quota_warn_fraction)`.execute(db);
  await sql`UPDATE plans SET storage_quota_mb = CASE plan_tier
      WHEN 'free' THEN 512 WHEN 'starter' THEN 2048 WHEN 'standard' THEN 10240
      WHEN 'professional' THEN 51200 END
    WHERE placement = 'shared'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE plans DROP CONSTRAINT plans_lift_below_warn,
      DROP COLUMN storage_quota_mb, DROP COLUMN quota_warn_fraction, DROP COLUMN quota_lift_fraction,
      DROP COLUMN quota_grace_seconds, DROP COLUMN statement_timeout_ms,
      DROP COLUMN idle_in_transaction_timeout_ms, DROP COLUMN temp_file_limit_mb,
      DROP COLUMN work_mem_mb, DROP COLUMN retired_at`.execute(db);
}

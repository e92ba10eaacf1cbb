// Plans through the admin API (/api/database/admin/plans): create, read, update, retire. A plan
// says where its tenants go, their connection limit, storage quota, session guardrails and backups.
import { z } from 'zod';
import { decimal, planTier } from './common';

const fraction = decimal({ scale: 2, min: 0.01, max: 1 });
const nullableInt = (min: number, max: number) => z.number().int().min(min).max(max).nullable();

/** The fields an admin sets; each one optional on update (the placement is fixed at create). */
const PlanSettings = {
  connection_limit: z.number().int().min(1).max(10_000),
  cpu_limit: decimal({ scale: 2, min: 0.01, max: 9999 }).nullable(),
  memory_limit_mb: nullableInt(1, 16_777_216),
  storage_size_gb: nullableInt(1, 1_000_000),
  max_instances_per_customer: nullableInt(0, 1_000_000),
  max_dedicated_servers_per_customer: nullableInt(0, 1_000_000),
  /** Null: no quota. */
  storage_quota_mb: nullableInt(1, 16_777_216),
  quota_warn_fraction: fraction,
  quota_lift_fraction: fraction,
  quota_grace_seconds: z.number().int().min(0).max(31_536_000),
  statement_timeout_ms: nullableInt(1, 86_400_000),
  idle_in_transaction_timeout_ms: nullableInt(1, 86_400_000),
  temp_file_limit_mb: nullableInt(1, 1_048_576),
  work_mem_mb: nullableInt(1, 2_097_151),
  /** A scheduled backup of each tenant every this many hours; null: none. */
  backup_interval_hours: nullableInt(1, 8760),
  /** How long a completed backup is kept. */
  backup_retention_days: z.number().int().min(1).max(3650),
};

const liftBelowWarn = (p: { quota_warn_fraction?: number; quota_lift_fraction?: number }) =>
  p.quota_warn_fraction === undefined ||
  p.quota_lift_fraction === undefined ||
  p.quota_lift_fraction <= p.quota_warn_fraction;
const liftMessage = { message: 'quota_lift_fraction must not exceed quota_warn_fraction' };

const Settings = z.strictObject(PlanSettings).partial();

export const CreatePlanRequest = Settings.extend({
  plan_tier: planTier,
  placement: z.enum(['shared', 'dedicated']),
  connection_limit: PlanSettings.connection_limit,
}).refine(liftBelowWarn, liftMessage);
export type CreatePlanRequest = z.infer<typeof CreatePlanRequest>;

export const UpdatePlanRequest = Settings.refine((p) => Object.keys(p).length > 0, {
  message: 'nothing to change',
}).refine(liftBelowWarn, liftMessage);
export type UpdatePlanRequest = z.infer<typeof UpdatePlanRequest>;

export const AdminPlan = z.object({
  plan_tier: z.string(),
  placement: z.enum(['shared', 'dedicated']),
  connection_limit: z.number().int(),
  cpu_limit: z.number().nullable(),
  memory_limit_mb: z.number().int().nullable(),
  storage_size_gb: z.number().int().nullable(),
  max_instances_per_customer: z.number().int().nullable(),
  max_dedicated_servers_per_customer: z.number().int().nullable(),
  storage_quota_mb: z.number().int().nullable(),
  quota_warn_fraction: z.number(),
  quota_lift_fraction: z.number(),
  quota_grace_seconds: z.number().int(),
  statement_timeout_ms: z.number().int().nullable(),
  idle_in_transaction_timeout_ms: z.number().int().nullable(),
  temp_file_limit_mb: z.number().int().nullable(),
  work_mem_mb: z.number().int().nullable(),
  backup_interval_hours: z.number().int().nullable(),
  backup_retention_days: z.number().int(),
  created_at: z.string(),
  updated_at: z.string(),
  retired_at: z.string().nullable(),
});
export type AdminPlan = z.infer<typeof AdminPlan>;

export const AdminPlanList = z.object({ plans: z.array(AdminPlan) });
export const AdminPlanAnswer = z.object({ plan: AdminPlan });
export const PlanParams = z.strictObject({ plan_tier: planTier });
export const PlansQuery = z.strictObject({ include_retired: z.enum(['true', 'false']).optional() });

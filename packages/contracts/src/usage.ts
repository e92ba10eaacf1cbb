// Usage, quota state and suspension of allocations, and a server's usage (admin API).
import { z } from 'zod';
import { planTier, uuid } from './common';

export const QUOTA_STATE = z.enum(['ok', 'warned', 'restricted']);

export const AllocationUsage = z.object({
  instance_id: uuid,
  tenant_database_id: uuid,
  plan_tier: z.string().nullable(),
  size_bytes: z.number().int().nullable(),
  active_connections: z.number().int().nullable(),
  sampled_at: z.iso.datetime().nullable(),
  storage_quota_bytes: z.number().int().nullable(),
  quota_state: QUOTA_STATE,
  quota_state_at: z.iso.datetime().nullable(),
  suspended: z.boolean(),
  suspended_at: z.iso.datetime().nullable(),
  /** The catalog's state is not yet applied on the server (the reconciler finishes it). */
  access_pending: z.boolean(),
});
export type AllocationUsage = z.infer<typeof AllocationUsage>;

export const ServerUsageQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(10),
});

export const ServerUsage = z.object({
  db_server_id: uuid,
  total_bytes: z.number().int(),
  /** The server's storage_size_gb in bytes; null when not known (registered servers). */
  storage_bytes: z.number().int().nullable(),
  used_fraction: z.number().nullable(),
  tenants: z.number().int(),
  sampled_tenants: z.number().int(),
  oldest_sample: z.iso.datetime().nullable(),
  largest: z.array(
    z.object({
      instance_id: uuid.nullable(),
      tenant_database_id: uuid,
      db_name: z.string(),
      plan_tier: z.string().nullable(),
      size_bytes: z.number().int().nullable(),
      active_connections: z.number().int().nullable(),
      sampled_at: z.iso.datetime().nullable(),
      quota_state: QUOTA_STATE,
      suspended: z.boolean(),
    }),
  ),
});
export type ServerUsage = z.infer<typeof ServerUsage>;

export const ChangePlanRequest = z.strictObject({ plan_tier: planTier });
export type ChangePlanRequest = z.infer<typeof ChangePlanRequest>;

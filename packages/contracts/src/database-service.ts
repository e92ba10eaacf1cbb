// The API of database-service: request and response bodies, shared by the routes (validation,
// OpenAPI) and by the typed client. Responses list their fields explicitly: never a whole row.
import { z } from 'zod';
import { decimal, freeText, planTier, uuid } from './common';

export const SERVER_STATUS = z.enum([
  'provisioning',
  'initializing',
  'active',
  'full',
  'cordoned',
  'draining',
  'maintenance',
  'error',
  'decommissioning',
  'decommissioned',
  'drained',
]);
export const SERVER_TYPE = z.enum(['shared', 'dedicated', 'platform']);
export const HEALTH_STATUS = z.enum(['healthy', 'degraded', 'unhealthy', 'unknown']);
export const PROVISIONED_DRIVER = z.enum(['local', 'swarm', 'kubernetes']);

const hostname = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$/, 'a hostname or IP address');
const serverName = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z][a-z0-9-]{0,62}$/, 'lowercase letters, digits and "-", starting with a letter');
/** A role or database name to log in with: no quotes, spaces or control characters. */
const loginName = z
  .string()
  .min(1)
  .max(63)
  .regex(
    /^[A-Za-z_][A-Za-z0-9_$@.-]{0,62}$/,
    'letters, digits, "_", "$", "@", "." or "-", not starting with a digit',
  );
const maxInstances = z.number().int().min(1).max(10_000);
const priority = z.number().int().min(0).max(10_000);
const placement = z
  .record(
    z
      .string()
      .max(64)
      .regex(/^[A-Za-z0-9_./-]+$/),
    freeText(256),
  )
  .refine((p) => Object.keys(p).length <= 32, 'at most 32 placement entries');

// ---- allocations ------------------------------------------------------------------------

/** GET /api/database/plans (allocate scope): the plans an allocate may name, nothing else of them. */
export const PlanList = z.object({
  plans: z.array(z.object({ plan_tier: z.string(), placement: z.enum(['shared', 'dedicated']) })),
});
export type PlanList = z.infer<typeof PlanList>;

export const AllocateRequest = z.strictObject({
  instance_id: uuid,
  customer_id: uuid,
  plan_tier: planTier,
  require_dedicated: z.boolean().optional(),
});
export type AllocateRequest = z.infer<typeof AllocateRequest>;

const Credentials = {
  db_server_id: uuid,
  db_host: z.string(),
  db_port: z.number().int(),
  db_name: z.string(),
  db_user: z.string(),
  db_password: z.string(),
};

/**
 * How to verify the server: sent for servers that serve TLS with a fleet-CA certificate (every
 * server tenantdb creates since TLS came); absent for older servers and registered external ones.
 * Optional, so a client still reads an older database-service.
 */
const Tls = {
  sslmode: z
    .enum(['verify-full'])
    .optional()
    .describe('libpq sslmode to connect with: the certificate names db_host and is signed by ssl_root_cert'),
  ssl_root_cert: z
    .string()
    .optional()
    .describe(
      'PEM of the fleet CA (libpq sslrootcert; node-postgres ssl.ca); also at GET /api/database/ca.pem',
    ),
};

/** Sent by every database-service that has it; optional so a client still reads an older one. */
const tenantDatabaseId = uuid
  .optional()
  .describe('the tenant database (allocation) id, as in GET /api/database/allocations/{instance_id}');

export const Allocated = z.object({
  status: z.literal('allocated'),
  ...Credentials,
  tenant_database_id: tenantDatabaseId,
  ...Tls,
});
export type Allocated = z.infer<typeof Allocated>;

export const Provisioning = z.object({
  status: z.literal('provisioning'),
  message: z.string(),
  retry_after: z.number().int().describe('seconds to wait before asking again'),
  db_server_id: uuid.optional(),
});
export type Provisioning = z.infer<typeof Provisioning>;

export const ProvisionDedicatedRequest = z.strictObject({
  instance_id: uuid,
  customer_id: uuid,
  plan_tier: planTier,
});
export type ProvisionDedicatedRequest = z.infer<typeof ProvisionDedicatedRequest>;

export const Provisioned = z.object({
  status: z.literal('provisioned'),
  ...Credentials,
  tenant_database_id: tenantDatabaseId,
  ...Tls,
});
export type Provisioned = z.infer<typeof Provisioned>;

export const InstanceParams = z.strictObject({ instance_id: uuid });

export const Allocation = z.object({
  instance_id: uuid,
  customer_id: uuid.nullable(),
  tenant_database_id: uuid,
  db_server_id: uuid,
  db_host: z.string().nullable(),
  db_port: z.number().int().nullable(),
  db_name: z.string(),
  db_user: z.string(),
  plan_tier: z.string().nullable(),
  status: z.enum(['creating', 'ready', 'releasing', 'released', 'failed']),
  connection_limit: z.number().int().nullable(),
  created_at: z.iso.datetime(),
  ready_at: z.iso.datetime().nullable(),
  released_at: z.iso.datetime().nullable(),
});
export type Allocation = z.infer<typeof Allocation>;

/** The credentials of a ready allocation, read again (GET …/credentials): the same fields as allocate's. */
export const AllocationCredentials = z.object({
  instance_id: uuid,
  tenant_database_id: uuid,
  ...Credentials,
  ...Tls,
});
export type AllocationCredentials = z.infer<typeof AllocationCredentials>;

export const Released = z.object({ status: z.literal('released'), instance_id: uuid });
export const Rotated = z.object({ status: z.literal('rotated'), ...Credentials, ...Tls });
export type Rotated = z.infer<typeof Rotated>;

// ---- admin ------------------------------------------------------------------------------

export const PoolsQuery = z.strictObject({
  status: SERVER_STATUS.optional(),
  server_type: SERVER_TYPE.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});

export const Pool = z.object({
  id: uuid,
  name: z.string(),
  driver: z.string(),
  host: z.string().nullable(),
  port: z.number().int().nullable(),
  server_type: SERVER_TYPE,
  allocation_strategy: z.enum(['auto', 'manual']),
  priority: z.number().int(),
  status: SERVER_STATUS,
  status_reason: z.string().nullable(),
  health_status: HEALTH_STATUS,
  health_failures: z.number().int(),
  last_health_check: z.iso.datetime().nullable(),
  last_health_latency_ms: z.number().int().nullable(),
  max_instances: z.number().int(),
  current_instances: z.number().int(),
  capacity_percentage: z.number(),
  postgres_version: z.string().nullable(),
  postgres_major: z
    .number()
    .int()
    .nullable()
    .describe('the major that runs (before provisioning: asked for)'),
  logical_replication: z
    .boolean()
    .nullable()
    .describe('wal_level = logical: can be a move source or target by logical replication'),
  created_at: z.iso.datetime(),
  provisioned_at: z.iso.datetime().nullable(),
});
export type Pool = z.infer<typeof Pool>;

export const PoolList = z.object({ pools: z.array(Pool), total_count: z.number().int() });

export const DrainBlock = z.object({
  tenant_database_id: uuid.nullable(),
  instance_id: uuid.nullable(),
  reason: z.string(),
});

/** A drain's progress, as the drain-server job last measured and the catalog says now. */
export const DrainProgress = z.object({
  started_at: z.iso.datetime(),
  requested_by: z.string().nullable(),
  checked_at: z.iso.datetime().nullable().describe("the drain-server job's last step"),
  finished_at: z.iso.datetime().nullable().describe('when the server became drained'),
  tenants_left: z
    .number()
    .int()
    .describe('tenant databases still served from the server (creating, ready, releasing)'),
  warm_left: z.number().int().describe('unclaimed warm databases not yet dropped'),
  moves_running: z
    .number()
    .int()
    .describe('moves off the server not yet done (the source is dropped at done)'),
  moves_failed: z.number().int().describe('moves off the server that failed since the drain started'),
  blocked: z
    .array(DrainBlock)
    .describe(
      'what keeps tenants (or the whole drain, tenant_database_id null) from moving at the last step',
    ),
});
export type DrainProgress = z.infer<typeof DrainProgress>;

export const PoolDetail = Pool.extend({
  orchestrator_ref: z.string().nullable(),
  image: z.string().nullable(),
  placement: z.record(z.string(), z.unknown()),
  dedicated_to_customer_id: uuid.nullable(),
  dedicated_to_instance_id: uuid.nullable(),
  cpu_limit: z.number().nullable(),
  memory_limit_mb: z.number().int().nullable(),
  storage_size_gb: z.number().int().nullable(),
  admin_user: z.string().nullable(),
  last_allocated_at: z.iso.datetime().nullable(),
  tenant_databases: z.record(z.string(), z.number().int()).describe('tenant database rows by status'),
  drain: DrainProgress.nullable().describe('while the server is draining or once drained; null otherwise'),
});
export type PoolDetail = z.infer<typeof PoolDetail>;

export const PoolParams = z.strictObject({ id: uuid });

export const CreatePoolRequest = z.strictObject({
  name: serverName.optional(),
  server_type: z.enum(['shared', 'platform']).default('shared'),
  driver: PROVISIONED_DRIVER.optional().describe('defaults to the configured provisioner driver'),
  max_instances: maxInstances,
  priority: priority.default(100),
  allocation_strategy: z.enum(['auto', 'manual']).default('auto'),
  placement: placement.default({}),
  cpu_limit: decimal({ scale: 2, min: 0.01, max: 256 })
    .optional()
    .describe('CPUs, in hundredths (the column is numeric(6,2))'),
  memory_limit_mb: z.number().int().min(128).max(1_048_576).optional(),
  storage_size_gb: z.number().int().min(1).max(65_536).optional(),
  postgres_major: z
    .number()
    .int()
    .min(13)
    .max(99)
    .optional()
    .describe(
      "PostgreSQL major (local driver: 15 or 17); default the worker's TENANTDB_LOCAL_POSTGRES_MAJOR",
    ),
});
export type CreatePoolRequest = z.infer<typeof CreatePoolRequest>;

export const PoolAccepted = z.object({ status: z.literal('provisioning'), pool: Pool });

export const RegisterPoolRequest = z.strictObject({
  name: serverName,
  host: hostname,
  port: z.number().int().min(1).max(65535).default(5432),
  admin_user: loginName,
  admin_password: freeText(1024).min(1),
  admin_database: loginName.default('postgres'),
  server_type: z.enum(['shared', 'platform']).default('shared'),
  max_instances: maxInstances,
  priority: priority.default(100),
  allocation_strategy: z.enum(['auto', 'manual']).default('auto'),
  placement: placement.default({}),
});
export type RegisterPoolRequest = z.infer<typeof RegisterPoolRequest>;

export const HealthCheckResult = z.object({
  db_server_id: uuid,
  ok: z.boolean(),
  checked_at: z.iso.datetime(),
  latency_ms: z.number().int().nullable(),
  error: z.string().nullable(),
  health_status: HEALTH_STATUS,
  health_failures: z.number().int(),
  status: SERVER_STATUS,
  postgres_version: z.string().nullable(),
  databases_on_server: z.number().int().nullable(),
  databases_in_catalog: z.number().int(),
  drift: z.number().int().nullable().describe('databases on the server minus catalog rows holding one'),
});
export type HealthCheckResult = z.infer<typeof HealthCheckResult>;

export const DrainResult = Pool.extend({
  remaining_tenants: z
    .number()
    .int()
    .describe('tenant databases still on the server (creating, ready or releasing)'),
  drain: DrainProgress.nullable(),
});
export type DrainResult = z.infer<typeof DrainResult>;

export const PoolDecommissioning = z.object({ status: z.literal('decommissioning'), pool: Pool });
export const PoolDecommissioned = z.object({ status: z.literal('decommissioned'), pool: Pool });

export const Stats = z.object({
  total_pools: z.number().int(),
  active_pools: z.number().int(),
  total_capacity: z.number().int(),
  total_used: z.number().int(),
  overall_utilization: z.number(),
  by_status: z.record(z.string(), z.number().int()),
  by_type: z.record(z.string(), z.number().int()),
});
export type Stats = z.infer<typeof Stats>;

// The catalog schema as kysely sees it: the one source of truth for row types.
import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';
import type { Nullable, NullableTimestamp, Numeric, Timestamp } from './column-types';
import type { BackupsTable, TenantEventsTable, TenantMovesTable, TenantRestoresTable } from './types-data';

export * from './types-data';

export const SERVER_STATUSES = [
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
  /** Emptied by a drain: no tenant left, out of placement and capacity, ready for decommission. */
  'drained',
] as const;
export type ServerStatus = (typeof SERVER_STATUSES)[number];
export const SERVER_TYPES = ['shared', 'dedicated', 'platform'] as const;
export type ServerType = (typeof SERVER_TYPES)[number];
export const DRIVERS = ['local', 'swarm', 'kubernetes', 'external'] as const;
export type Driver = (typeof DRIVERS)[number];
export const HEALTH_STATUSES = ['healthy', 'degraded', 'unhealthy', 'unknown'] as const;
export type HealthStatus = (typeof HEALTH_STATUSES)[number];
export const TENANT_DB_STATUSES = ['warm', 'creating', 'ready', 'releasing', 'released', 'failed'] as const;
export type TenantDbStatus = (typeof TENANT_DB_STATUSES)[number];
/** Rows that hold a slot: for every server, current_instances equals the count of these. */
export const SLOT_HOLDING_STATUSES = ['creating', 'ready', 'releasing'] as const satisfies TenantDbStatus[];
export type SlotHoldingStatus = (typeof SLOT_HOLDING_STATUSES)[number];
/** Rows that stand for a database on their server (warm ones included): what pg_database is checked against. */
export const ON_SERVER_STATUSES = ['warm', ...SLOT_HOLDING_STATUSES] as const satisfies TenantDbStatus[];
/** Rows a process is moving on the server (creating or dropping): stuck when a crash left them so. */
export const IN_FLIGHT_STATUSES = ['creating', 'releasing'] as const satisfies TenantDbStatus[];
/** An instance that has its database or is getting it (not yet on the way out). */
export const HELD_STATUSES = ['creating', 'ready'] as const satisfies TenantDbStatus[];

/** Servers that run and serve their tenants, whether or not they take new ones. */
export const SERVING_STATUSES = [
  'active',
  'full',
  'cordoned',
  'draining',
  'maintenance',
] as const satisfies ServerStatus[];
/** Servers the health check visits: the serving ones, and errored ones so that they recover. */
export const CHECKABLE_STATUSES = [...SERVING_STATUSES, 'error'] as const satisfies ServerStatus[];
/** Servers an operator may decommission (once empty): the checkable ones, and drained ones. */
export const RETIRABLE_STATUSES = [...CHECKABLE_STATUSES, 'drained'] as const satisfies ServerStatus[];
/** Servers on their way up: pending capacity, and rows a provision-server job must finish. */
export const STARTING_STATUSES = ['provisioning', 'initializing'] as const satisfies ServerStatus[];
/** A server's health that still lets it take new tenants. */
export const PLACEABLE_HEALTH = ['healthy', 'unknown'] as const satisfies HealthStatus[];

export const QUOTA_STATES = ['ok', 'warned', 'restricted'] as const;
export type QuotaState = (typeof QUOTA_STATES)[number];

export interface DbServersTable {
  id: Generated<string>;
  name: string;
  driver: Driver;
  host: string | null;
  port: number | null;
  orchestrator_ref: string | null;
  image: string | null;
  postgres_version: string | null;
  /** The major that runs (or, before provisioning, the one asked for; null: the driver's default). */
  postgres_major: ColumnType<number | null, number | null | undefined, number | null>;
  /** wal_level = logical: the server can be a move's source or target by logical replication. */
  logical_replication: ColumnType<boolean | null, boolean | null | undefined, boolean | null>;
  server_type: ServerType;
  allocation_strategy: Generated<'auto' | 'manual'>;
  priority: Generated<number>;
  placement: Generated<Record<string, unknown>>;
  dedicated_to_customer_id: string | null;
  dedicated_to_instance_id: string | null;
  max_instances: number;
  current_instances: Generated<number>;
  cpu_limit: Numeric;
  memory_limit_mb: number | null;
  storage_size_gb: number | null;
  status: ServerStatus;
  status_reason: string | null;
  health_status: Generated<HealthStatus>;
  health_failures: Generated<number>;
  last_health_check: NullableTimestamp;
  last_health_latency_ms: number | null;
  /** Tenant databases on the server minus catalog rows for them, at the last check; null: unknown. */
  database_drift: ColumnType<number | null, number | null | undefined, number | null>;
  /** current_instances minus the rows holding a slot, as the last reconcile measured it. */
  slot_drift: Generated<number>;
  admin_user: string | null;
  admin_password_enc: string | null;
  admin_database: Generated<string>;
  created_at: Timestamp;
  updated_at: Timestamp;
  provisioned_at: NullableTimestamp;
  last_allocated_at: NullableTimestamp;
  deleted_at: NullableTimestamp;
  /** The drain under way or done (migration 0018); null: never drained. */
  drain_started_at: NullableTimestamp;
  drain_requested_by: string | null;
  /** The drain-server job's last step, and what it found in the way then. */
  drain_checked_at: NullableTimestamp;
  drain_finished_at: NullableTimestamp;
  drain_blocked: ColumnType<DrainBlock[], string | undefined, string>;
}

/** A tenant a drain cannot move (yet), or what keeps the whole drain waiting (no tenant named). */
export interface DrainBlock {
  tenant_database_id: string | null;
  instance_id: string | null;
  reason: string;
}

export interface PlansTable {
  plan_tier: string;
  placement: 'shared' | 'dedicated';
  connection_limit: number;
  cpu_limit: Numeric;
  memory_limit_mb: number | null;
  storage_size_gb: number | null;
  /** Live instances one customer may hold; null: the configured default. */
  max_instances_per_customer: ColumnType<number | null, number | null | undefined, number | null>;
  /** Dedicated servers one customer may have; null: the configured default. */
  max_dedicated_servers_per_customer: ColumnType<number | null, number | null | undefined, number | null>;
  /** Storage quota of each tenant; null: none. */
  storage_quota_mb: Nullable<number>;
  /** Fractions of the quota: over warn → warned; under lift → ok again. numeric: strings when read. */
  quota_warn_fraction: ColumnType<string, number | undefined, number>;
  quota_lift_fraction: ColumnType<string, number | undefined, number>;
  /** How long a tenant over its quota stays warned before it is restricted. */
  quota_grace_seconds: ColumnType<number, number | undefined, number>;
  /** Session guardrails set on each tenant role of a shared server; null: the server's default. */
  statement_timeout_ms: Nullable<number>;
  idle_in_transaction_timeout_ms: Nullable<number>;
  temp_file_limit_mb: Nullable<number>;
  work_mem_mb: Nullable<number>;
  /** A backup of each tenant every this many hours (the scheduler); null: no scheduled backups. */
  backup_interval_hours: ColumnType<number | null, number | null | undefined, number | null>;
  /** How long a completed backup is kept. */
  backup_retention_days: ColumnType<number, number | undefined, number>;
  /** A retired plan takes no new allocations. */
  retired_at: NullableTimestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface TenantDatabasesTable {
  id: Generated<string>;
  instance_id: string | null;
  customer_id: string | null;
  db_server_id: string;
  db_name: string;
  db_user: string;
  password_enc: string;
  /** A rotation's new password until the pool server has it (then moved to password_enc). */
  password_pending_enc: string | null;
  plan_tier: string | null;
  status: TenantDbStatus;
  status_reason: string | null;
  connection_limit: number | null;
  /** The latest usage sample: pg_database_size, sessions, when it was taken. */
  size_bytes: Nullable<number>;
  active_connections: Nullable<number>;
  usage_sampled_at: NullableTimestamp;
  quota_state: ColumnType<QuotaState, QuotaState | undefined, QuotaState>;
  quota_state_at: NullableTimestamp;
  /** Since when the latest samples have been over the quota (the grace period runs from it). */
  over_quota_since: NullableTimestamp;
  suspended_at: NullableTimestamp;
  /** The catalog's quota state or suspension is not yet applied on the server. */
  access_pending: ColumnType<boolean, boolean | undefined, boolean>;
  /** 1: the login role owns the database (legacy); 2: NOLOGIN owner role + login member. */
  access_arrangement: ColumnType<1 | 2, 1 | 2 | undefined, 1 | 2>;
  created_at: Timestamp;
  updated_at: Timestamp;
  ready_at: NullableTimestamp;
  released_at: NullableTimestamp;
}

export interface AuditEventsTable {
  id: Generated<string>;
  occurred_at: Timestamp;
  actor: string;
  action: string;
  request_id: string | null;
  instance_id: string | null;
  db_server_id: string | null;
  tenant_database_id: string | null;
  details: Generated<Record<string, unknown>>;
}

export const API_KEY_SCOPES = ['allocate', 'admin', 'admin:read', 'portal'] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

export interface ApiKeysTable {
  id: Generated<string>;
  name: string;
  lookup_id: string;
  secret_digest: Buffer;
  scopes: ApiKeyScope[];
  created_by: string;
  created_at: Timestamp;
  expires_at: NullableTimestamp;
  last_used_at: NullableTimestamp;
  revoked_at: NullableTimestamp;
  revoked_by: string | null;
}

/** The fleet CA (one active: retired_at null); its key is SecretBox ciphertext. */
export interface FleetCaTable {
  id: Generated<string>;
  cert_pem: string;
  key_enc: string;
  not_after: Timestamp;
  created_at: Timestamp;
  retired_at: NullableTimestamp;
}

/** The TLS certificate tenantdb issued a server it created; its key is SecretBox ciphertext. */
export interface ServerCertificatesTable {
  db_server_id: string;
  ca_id: string;
  cert_pem: string;
  key_enc: string;
  hosts: string[];
  not_after: Timestamp;
  created_at: Timestamp;
}

export interface CatalogDatabase {
  db_servers: DbServersTable;
  plans: PlansTable;
  tenant_databases: TenantDatabasesTable;
  audit_events: AuditEventsTable;
  api_keys: ApiKeysTable;
  fleet_ca: FleetCaTable;
  server_certificates: ServerCertificatesTable;
  tenant_moves: TenantMovesTable;
  backups: BackupsTable;
  tenant_restores: TenantRestoresTable;
  tenant_events: TenantEventsTable;
}

export type DbServer = Selectable<DbServersTable>;
export type NewDbServer = Insertable<DbServersTable>;
export type DbServerUpdate = Updateable<DbServersTable>;
export type Plan = Selectable<PlansTable>;
export type TenantDatabase = Selectable<TenantDatabasesTable>;
export type NewTenantDatabase = Insertable<TenantDatabasesTable>;
export type AuditEvent = Insertable<AuditEventsTable>;
export type ApiKey = Selectable<ApiKeysTable>;
export type FleetCa = Selectable<FleetCaTable>;
export type ServerCertificate = Selectable<ServerCertificatesTable>;
export type TenantMove = Selectable<TenantMovesTable>;
export type TenantMoveUpdate = Updateable<TenantMovesTable>;
export type Backup = Selectable<BackupsTable>;
export type TenantRestore = Selectable<TenantRestoresTable>;
export type TenantRestoreUpdate = Updateable<TenantRestoresTable>;

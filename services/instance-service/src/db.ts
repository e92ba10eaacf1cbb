// instance-service's tables (schema "instances") as kysely sees them: the one source of truth for
// its row types. database-service's tables are not visible from here.
import { createDb, type DbOptions, INSTANCE_SERVICE_SCHEMA } from '@tenantdb/catalog';
import type { InstanceStatus } from '@tenantdb/contracts';
import type { ColumnType, Generated, Insertable, Kysely, Selectable, Transaction } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;

export type CallbackStatus = 'pending' | 'delivered' | 'failed';

export interface InstancesTable {
  id: Generated<string>;
  customer_id: string;
  name: string;
  plan_tier: string;
  status: ColumnType<InstanceStatus, InstanceStatus | undefined, InstanceStatus>;
  wait_reason: string | null;
  error: string | null;
  tenant_database_id: string | null;
  db_server_id: string | null;
  db_host: string | null;
  db_port: number | null;
  db_name: string | null;
  db_user: string | null;
  idempotency_key: string | null;
  request_digest: string | null;
  callback_url: string | null;
  callback_status: CallbackStatus | null;
  callback_attempts: Generated<number>;
  callback_error: string | null;
  callback_delivered_at: NullableTimestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
  ready_at: NullableTimestamp;
  failed_at: NullableTimestamp;
  deleted_at: NullableTimestamp;
  release_verified_at: NullableTimestamp;
}

export interface AuditEventsTable {
  id: Generated<string>;
  occurred_at: Timestamp;
  actor: string;
  action: string;
  request_id: string | null;
  instance_id: string | null;
  customer_id: string | null;
  details: Generated<Record<string, unknown>>;
}

export interface InstancesDatabase {
  instances: InstancesTable;
  audit_events: AuditEventsTable;
}

export type InstancesDb = Kysely<InstancesDatabase>;
export type Executor = InstancesDb | Transaction<InstancesDatabase>;
export type InstanceRow = Selectable<InstancesTable>;
export type NewInstanceRow = Insertable<InstancesTable>;
export type NewAuditEvent = Insertable<AuditEventsTable>;

export function createInstancesDb(opts: Omit<DbOptions, 'schema'>): InstancesDb {
  return createDb<InstancesDatabase>({ ...opts, schema: INSTANCE_SERVICE_SCHEMA });
}

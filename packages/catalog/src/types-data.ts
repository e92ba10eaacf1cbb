// The catalog's tables of what is done to a tenant's data (types.ts has the fleet's): moves,
// backups and restores, and the outbox of events to the portal.
import type { ColumnType, Generated } from 'kysely';
import type { NullableTimestamp, Timestamp } from './column-types';

export const MOVE_PHASES = [
  /** A plan change's move to a dedicated server still being provisioned: no slot held yet. */
  'awaiting_target',
  'pending',
  'copying_schema',
  'syncing',
  'cutting_over',
  'cleaning_up',
  'grace',
  'dropping_source',
  'done',
  'cancelling',
  'cancelled',
  'failing',
  'failed',
] as const;
export type MovePhase = (typeof MOVE_PHASES)[number];
/** A move that is over: the only phases in which another move of the tenant may start. */
export const FINISHED_MOVE_PHASES = ['done', 'cancelled', 'failed'] as const satisfies MovePhase[];
export const ACTIVE_MOVE_PHASES = MOVE_PHASES.filter(
  (p) => !(FINISHED_MOVE_PHASES as readonly string[]).includes(p),
) as Exclude<MovePhase, (typeof FINISHED_MOVE_PHASES)[number]>[];
/** Before the cut-over: an operator may still cancel, and everything on the target is undone. */
export const CANCELLABLE_MOVE_PHASES = [
  'awaiting_target',
  'pending',
  'copying_schema',
  'syncing',
] as const satisfies MovePhase[];
/**
 * Until the tenant is served from the target and the move's replication objects are gone: a
 * rotation or a release of the tenant is refused (409) meanwhile, so it never meets the role copy,
 * the cut-over or the clean-up half way. From `grace` on the tenant is the target's like any other.
 */
export const MOVE_LOCKS_TENANT_PHASES = [
  'awaiting_target',
  'pending',
  'copying_schema',
  'syncing',
  'cutting_over',
  'cleaning_up',
  'cancelling',
  'failing',
] as const satisfies MovePhase[];
export type MoveMethod = 'logical' | 'dump';

export interface TenantMovesTable {
  id: Generated<string>;
  tenant_database_id: string;
  source_server_id: string;
  target_server_id: string;
  /** Where the move's own slot is (target before the cut-over, source after); null once freed. */
  slot_server_id: string | null;
  phase: MovePhase;
  method: MoveMethod | null;
  method_reason: string | null;
  bytes_total: number | null;
  bytes_copied: number | null;
  tables_total: number | null;
  tables_synced: number | null;
  lag_bytes: number | null;
  write_blocked_ms: number | null;
  cancel_requested: Generated<boolean>;
  error: string | null;
  requested_by: string;
  request_id: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  cut_over_at: NullableTimestamp;
  drop_source_after: NullableTimestamp;
  finished_at: NullableTimestamp;
  /** A plan change: the plan written onto the tenant row (and its connection limit) at the cut-over. */
  plan_tier: string | null;
}

/** The outbox of events to the portal (migration 0021). */
export interface TenantEventsTable {
  delivery_id: string;
  instance_id: string;
  event: string;
  occurred_at: Timestamp;
  created_at: Generated<Date>;
  queued_at: NullableTimestamp;
}

export type BackupStatus = 'running' | 'completed' | 'failed';
export type BackupReason = 'manual' | 'scheduled' | 'release';

/** What a completed backup records of its dump (backups.manifest). Never a secret. */
export interface BackupManifest {
  format: 'pg_dump -Fc';
  tenant_database_id: string;
  db_name: string;
  db_server_id: string;
  server_version: string;
  pg_dump_version: string;
  size_bytes: number;
  sha256: string;
  key_id: string;
  /** Entries of the archive's table of contents (pg_restore -l). */
  archive_entries: number;
  /** Rows per table ("schema.table"), counted in the snapshot pg_dump dumped. */
  row_counts: Record<string, number>;
  duration_ms: number;
}

export interface BackupsTable {
  id: Generated<string>;
  tenant_database_id: string;
  instance_id: string | null;
  customer_id: string | null;
  db_server_id: string;
  status: BackupStatus;
  reason: BackupReason;
  object_key: string;
  size_bytes: number | null;
  stored_bytes: number | null;
  sha256: string | null;
  key_id: string | null;
  manifest: ColumnType<BackupManifest | null, string | null | undefined, string | null>;
  error: string | null;
  requested_by: string;
  created_at: Timestamp;
  started_at: NullableTimestamp;
  finished_at: NullableTimestamp;
  expires_at: NullableTimestamp;
  last_verified_at: NullableTimestamp;
  last_verify_result: 'passed' | 'failed' | null;
  last_verify_error: string | null;
}

export type RestoreMode = 'replace' | 'copy';
export const RESTORE_PHASES = [
  'pending',
  'restoring',
  'cutting_over',
  'grace',
  'dropping_old',
  'done',
  'failing',
  'failed',
] as const;
export type RestorePhase = (typeof RESTORE_PHASES)[number];
export const ACTIVE_RESTORE_PHASES = RESTORE_PHASES.filter((p) => p !== 'done' && p !== 'failed');
/**
 * Phases in which a restore is working on the tenant's database (restoring beside it, swapping it
 * in, or undoing): a release, rotation or move then is refused. From grace on, the tenant's
 * database is the restored one and only the closed, replaced one is left to drop.
 */
export const RESTORE_LOCKS_TENANT_PHASES = [
  'pending',
  'restoring',
  'cutting_over',
  'failing',
] as const satisfies RestorePhase[];

export interface TenantRestoresTable {
  id: Generated<string>;
  /** null once retention deleted the backup. */
  backup_id: string | null;
  tenant_database_id: string;
  mode: RestoreMode;
  phase: RestorePhase;
  bytes_restored: number | null;
  error: string | null;
  requested_by: string;
  request_id: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  cut_over_at: NullableTimestamp;
  drop_old_after: NullableTimestamp;
  finished_at: NullableTimestamp;
}

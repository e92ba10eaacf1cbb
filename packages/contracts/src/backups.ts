// The admin API of backups and restores (database-service, docs/api.md "Backups"): take a backup
// of one allocation now, list an allocation's backups, read one (with its manifest), restore one
// (replace: into the allocation it was taken of; copy: into another allocation of the same
// customer), read a restore's progress. Nothing here carries a secret: manifests hold names,
// versions, sizes, digests and row counts only.
import { z } from 'zod';
import { uuid } from './common';

export const BACKUP_STATUS = z.enum(['running', 'completed', 'failed']);

export const StartBackupRequest = z.strictObject({
  instance_id: uuid.describe('the allocation to back up (its live tenant database)'),
});
export type StartBackupRequest = z.infer<typeof StartBackupRequest>;

export const BackupManifest = z.object({
  format: z.literal('pg_dump -Fc'),
  tenant_database_id: uuid,
  db_name: z.string(),
  db_server_id: uuid,
  server_version: z.string(),
  pg_dump_version: z.string(),
  size_bytes: z.number().int(),
  sha256: z.string(),
  key_id: z.string().describe('which key of TENANTDB_ENCRYPTION_KEYS sealed the object'),
  archive_entries: z.number().int().describe('entries of the archive table of contents'),
  row_counts: z.record(z.string(), z.number().int()).describe('rows per table, in the dumped snapshot'),
  duration_ms: z.number().int(),
});

export const Backup = z.object({
  id: uuid,
  tenant_database_id: uuid,
  instance_id: z.string().nullable(),
  customer_id: z.string().nullable(),
  db_server_id: uuid,
  status: BACKUP_STATUS,
  reason: z.enum(['manual', 'scheduled', 'release']),
  size_bytes: z.number().int().nullable().describe('the archive, before encryption'),
  stored_bytes: z.number().int().nullable().describe('the object in the store'),
  sha256: z.string().nullable().describe('of the archive, before encryption'),
  key_id: z.string().nullable(),
  manifest: BackupManifest.nullable(),
  error: z.string().nullable(),
  requested_by: z.string(),
  created_at: z.iso.datetime(),
  finished_at: z.iso.datetime().nullable(),
  expires_at: z.iso.datetime().nullable(),
  last_verified_at: z.iso.datetime().nullable().describe('the latest restore drill of this backup'),
  last_verify_result: z.enum(['passed', 'failed']).nullable(),
  last_verify_error: z.string().nullable(),
});
export type Backup = z.infer<typeof Backup>;

export const BackupList = z.object({ backups: z.array(Backup), total_count: z.number().int() });
export type BackupList = z.infer<typeof BackupList>;

export const BackupsQuery = z.strictObject({
  instance_id: uuid
    .optional()
    .describe("the allocation whose backups to list (its live or latest tenant database); none: the fleet's"),
  status: BACKUP_STATUS.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});
export type BackupsQuery = z.infer<typeof BackupsQuery>;

export const BackupParams = z.strictObject({ id: uuid });

export const RestoreRequest = z.discriminatedUnion('mode', [
  z.strictObject({
    mode: z.literal('replace').describe("a new database from the backup replaces the allocation's own"),
  }),
  z.strictObject({
    mode: z.literal('copy'),
    target_instance_id: uuid.describe(
      "another live allocation of the same customer (allocate it first): its database's contents are replaced by the backup's; it keeps its own role and password",
    ),
  }),
]);
export type RestoreRequest = z.infer<typeof RestoreRequest>;

export const RESTORE_PHASE = z.enum([
  'pending',
  'restoring',
  'cutting_over',
  'grace',
  'dropping_old',
  'done',
  'failing',
  'failed',
]);

export const Restore = z.object({
  id: uuid,
  backup_id: uuid.nullable().describe('null once retention deleted the backup'),
  mode: z.enum(['replace', 'copy']),
  tenant_database_id: uuid.describe('the allocation restored into'),
  instance_id: z.string().nullable(),
  phase: RESTORE_PHASE,
  bytes_restored: z.number().int().nullable(),
  error: z.string().nullable(),
  requested_by: z.string(),
  created_at: z.iso.datetime(),
  updated_at: z.iso.datetime(),
  cut_over_at: z.iso.datetime().nullable(),
  drop_old_after: z.iso.datetime().nullable().describe('end of the grace period of the replaced database'),
  finished_at: z.iso.datetime().nullable(),
});
export type Restore = z.infer<typeof Restore>;

export const RestoreParams = z.strictObject({ id: uuid });

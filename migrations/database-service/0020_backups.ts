// Per-tenant backups and restores (design §11, issue 16). A backup row is the truth about one
// object in the backup store: `running` while pg_dump streams into it, `completed` only once the
// object is whole and its digest recorded, `failed` (its object deleted) otherwise; a listing of
// backups never shows anything else as restorable. A restore is a durable record the worker
// advances phase by phase, like a move: never in place, always into a new database.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE plans
    ADD COLUMN backup_interval_hours integer CHECK (backup_interval_hours BETWEEN 1 AND 8760),
    ADD COLUMN backup_retention_days integer NOT NULL DEFAULT 7 CHECK (backup_retention_days BETWEEN 1 AND 3650)`.execute(
    db,
  );
  await sql`
    CREATE TABLE backups (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_database_id uuid NOT NULL REFERENCES tenant_databases (id),
      instance_id text,
      customer_id text,
      db_server_id uuid NOT NULL REFERENCES db_servers (id),
      status text NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
      reason text NOT NULL CHECK (reason IN ('manual', 'scheduled', 'release')),
      object_key text NOT NULL UNIQUE,
      size_bytes bigint,
      stored_bytes bigint,
      sha256 text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
      key_id text,
      manifest jsonb,
      error text,
      requested_by text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      started_at timestamptz,
      finished_at timestamptz,
      expires_at timestamptz,
      last_verified_at timestamptz,
      last_verify_result text CHECK (last_verify_result IN ('passed', 'failed')),
      last_verify_error text,
      CONSTRAINT backups_completed_whole CHECK (status <> 'completed' OR
        (sha256 IS NOT NULL AND size_bytes IS NOT NULL AND key_id IS NOT NULL AND manifest IS NOT NULL AND finished_at IS NOT NULL))
    )`.execute(db);
  await sql`CREATE INDEX backups_tenant ON backups (tenant_database_id, created_at DESC)`.execute(db);
  await sql`CREATE INDEX backups_server_running ON backups (db_server_id) WHERE status = 'running'`.execute(
    db,
  );
  await sql`CREATE INDEX backups_expires ON backups (expires_at) WHERE status = 'completed'`.execute(db);
  // One dump of a tenant at a time.
  await sql`CREATE UNIQUE INDEX backups_one_running ON backups (tenant_database_id) WHERE status = 'running'`.execute(
    db,
  );

  await sql`
    CREATE TABLE tenant_restores (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      -- null once retention has deleted the backup (the restore's record stays).
      backup_id uuid REFERENCES backups (id) ON DELETE SET NULL,
      -- replace: the backup's own allocation; copy: the new allocation it is restored into.
      tenant_database_id uuid NOT NULL REFERENCES tenant_databases (id),
      mode text NOT NULL CHECK (mode IN ('replace', 'copy')),
      phase text NOT NULL CHECK (phase IN ('pending', 'restoring', 'cutting_over', 'grace',
        'dropping_old', 'done', 'failing', 'failed')),
      bytes_restored bigint,
      error text,
      requested_by text NOT NULL,
      request_id text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      cut_over_at timestamptz,
      drop_old_after timestamptz,
      finished_at timestamptz
    )`.execute(db);
  // At most one restore into an allocation at a time.
  await sql`CREATE UNIQUE INDEX tenant_restores_active ON tenant_restores (tenant_database_id)
            WHERE phase NOT IN ('done', 'failed')`.execute(db);
  await sql`CREATE INDEX tenant_restores_backup ON tenant_restores (backup_id)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE tenant_restores`.execute(db);
  await sql`DROP TABLE backups`.execute(db);
  await sql`ALTER TABLE plans DROP COLUMN backup_interval_hours, DROP COLUMN backup_retention_days`.execute(
    db,
  );
}

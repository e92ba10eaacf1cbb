// Moves of a tenant database from one server to another: a durable record the worker advances phase
// by phase (design §11). A move holds one slot beside its tenant's own: on the target until the
// cut-over, then on the source until the source database is dropped. `slot_server_id` says where
// that slot is (null once freed), so slot accounting stays exact: for every server,
// current_instances = its slot-holding tenant rows + the moves whose slot it holds.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE tenant_moves (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_database_id uuid NOT NULL REFERENCES tenant_databases (id),
      source_server_id uuid NOT NULL REFERENCES db_servers (id),
      target_server_id uuid NOT NULL REFERENCES db_servers (id),
      slot_server_id uuid REFERENCES db_servers (id),
      phase text NOT NULL CHECK (phase IN ('pending', 'copying_schema', 'syncing', 'cutting_over',
        'cleaning_up', 'grace', 'dropping_source', 'done', 'cancelling', 'cancelled', 'failing', 'failed')),
      method text CHECK (method IN ('logical', 'dump')),
      method_reason text,
      bytes_total bigint,
      bytes_copied bigint,
      tables_total integer,
      tables_synced integer,
      lag_bytes bigint,
      write_blocked_ms integer,
      cancel_requested boolean NOT NULL DEFAULT false,
      error text,
      requested_by text NOT NULL,
      request_id text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      cut_over_at timestamptz,
      drop_source_after timestamptz,
      finished_at timestamptz,
      CONSTRAINT tenant_moves_two_servers CHECK (source_server_id <> target_server_id),
      CONSTRAINT tenant_moves_slot CHECK (slot_server_id IS NULL OR slot_server_id IN (source_server_id, target_server_id))
    )`.execute(db);
  // At most one move of a tenant at a time: every phase before done, cancelled, failed.
  await sql`CREATE UNIQUE INDEX tenant_moves_active_tenant ON tenant_moves (tenant_database_id)
            WHERE phase NOT IN ('done', 'cancelled', 'failed')`.execute(db);
  await sql`CREATE INDEX tenant_moves_source ON tenant_moves (source_server_id, phase)`.execute(db);
  await sql`CREATE INDEX tenant_moves_target ON tenant_moves (target_server_id, phase)`.execute(db);
  await sql`CREATE INDEX tenant_moves_slot ON tenant_moves (slot_server_id) WHERE slot_server_id IS NOT NULL`.execute(
    db,
  );
  await sql`CREATE INDEX tenant_moves_created ON tenant_moves (created_at DESC)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE tenant_moves`.execute(db);
}

// instance-service's instances: what the signup portal created, where its database is, and the
// state of the work around it (waiting for a database, releasing it, the callback). No foreign key
// to database-service's schema: tenant_database_id and db_server_id are references by value.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE instances (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      customer_id uuid NOT NULL,
      name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
      plan_tier text NOT NULL CHECK (plan_tier ~ '^[a-z][a-z0-9_-]{0,31}$'),
      status text NOT NULL DEFAULT 'pending' CHECK (status IN
        ('pending', 'waiting_for_database', 'ready', 'failed', 'deleting', 'deleted')),
      -- Why the instance is still waiting (the last answer of database-service); why it failed.
      wait_reason text CHECK (char_length(wait_reason) <= 500),
      error text CHECK (char_length(error) <= 1000),
      tenant_database_id uuid,
      db_server_id uuid,
      db_host text,
      db_port integer CHECK (db_port BETWEEN 1 AND 65535),
      db_name text,
      db_user text,
      -- Idempotency-Key of the create request and a digest of its body: a repeat with the same
      -- key and body answers this instance, with another body 422.
      idempotency_key text CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
      request_digest text,
      callback_url text CHECK (char_length(callback_url) <= 2048),
      -- null until the instance is ready or failed; then pending until delivered or given up.
      callback_status text CHECK (callback_status IN ('pending', 'delivered', 'failed')),
      callback_attempts integer NOT NULL DEFAULT 0 CHECK (callback_attempts >= 0),
      callback_error text CHECK (char_length(callback_error) <= 500),
      callback_delivered_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      ready_at timestamptz,
      failed_at timestamptz,
      deleted_at timestamptz,
      -- Set once no live allocation is left for a failed or deleted instance after the settle time
      -- (a request to database-service still in flight could otherwise allocate one later).
      release_verified_at timestamptz,
      CONSTRAINT instances_ready_has_database CHECK (status <> 'ready' OR (db_name IS NOT NULL AND db_host IS NOT NULL)),
      -- A callback is due once the instance is ready or failed, and only if it has a URL.
      CONSTRAINT instances_callback_needs_url CHECK (callback_status IS NULL OR callback_url IS NOT NULL)
    )
  `.execute(db);
  await sql`CREATE UNIQUE INDEX instances_idempotency_key ON instances (idempotency_key)
            WHERE idempotency_key IS NOT NULL`.execute(db);
  // GET /api/v1/instances?customer_id=…: newest first.
  await sql`CREATE INDEX instances_customer ON instances (customer_id, created_at DESC, id)`.execute(db);
  // The sweep reads only instances with work left.
  await sql`CREATE INDEX instances_unsettled ON instances (updated_at)
            WHERE status IN ('pending', 'waiting_for_database', 'deleting')
               OR (status IN ('failed', 'deleted') AND release_verified_at IS NULL)
               OR callback_status = 'pending'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE instances`.execute(db);
}

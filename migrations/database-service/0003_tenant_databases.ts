// One row per tenant database, including pre-created warm ones. instance_id is the idempotency
// key of allocate: at most one live (creating/ready/releasing) row per instance.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE tenant_databases (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      instance_id uuid,
      customer_id uuid,
      db_server_id uuid NOT NULL REFERENCES db_servers (id),
      db_name text NOT NULL CHECK (db_name ~ '^[a-z][a-z0-9_]{0,62}$'),
      db_user text NOT NULL CHECK (db_user ~ '^[a-z][a-z0-9_]{0,62}$'),
      password_enc text NOT NULL CHECK (password_enc LIKE 'v1.%'),
      plan_tier text REFERENCES plans (plan_tier),
      status text NOT NULL CHECK (status IN ('warm', 'creating', 'ready', 'releasing', 'released', 'failed')),
      status_reason text,
      connection_limit integer CHECK (connection_limit > 0),
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      ready_at timestamptz,
      released_at timestamptz,
      CONSTRAINT tenant_databases_owner CHECK (status = 'warm' OR instance_id IS NOT NULL)
    )
  `.execute(db);
  await sql`CREATE UNIQUE INDEX tenant_databases_live_instance ON tenant_databases (instance_id)
            WHERE status IN ('creating', 'ready', 'releasing')`.execute(db);
  await sql`CREATE INDEX tenant_databases_instance ON tenant_databases (instance_id, created_at DESC)`.execute(
    db,
  );
  await sql`CREATE UNIQUE INDEX tenant_databases_server_name ON tenant_databases (db_server_id, db_name)`.execute(
    db,
  );
  await sql`CREATE INDEX tenant_databases_server_status ON tenant_databases (db_server_id, status)`.execute(
    db,
  );
  await sql`CREATE INDEX tenant_databases_plan ON tenant_databases (plan_tier)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE tenant_databases`.execute(db);
}

// Every Postgres server tenants can be placed on. Capacity is guarded by a CHECK so that no code
// path, however buggy, can over-commit a server.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE db_servers (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      name text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9-]{0,62}$'),
      driver text NOT NULL CHECK (driver IN ('local', 'swarm', 'kubernetes', 'external')),
      host text CHECK (char_length(host) <= 253),
      port integer CHECK (port BETWEEN 1 AND 65535),
      orchestrator_ref text,
      image text,
      postgres_version text,
      server_type text NOT NULL CHECK (server_type IN ('shared', 'dedicated', 'platform')),
      allocation_strategy text NOT NULL DEFAULT 'auto' CHECK (allocation_strategy IN ('auto', 'manual')),
      priority integer NOT NULL DEFAULT 100,
      placement jsonb NOT NULL DEFAULT '{}'::jsonb,
      dedicated_to_customer_id uuid,
      dedicated_to_instance_id uuid,
      max_instances integer NOT NULL CHECK (max_instances > 0),
      current_instances integer NOT NULL DEFAULT 0,
      cpu_limit numeric(6, 2) CHECK (cpu_limit > 0),
      memory_limit_mb integer CHECK (memory_limit_mb > 0),
      storage_size_gb integer CHECK (storage_size_gb > 0),
      status text NOT NULL CHECK (status IN ('provisioning', 'initializing', 'active', 'full', 'cordoned',
        'draining', 'maintenance', 'error', 'decommissioning', 'decommissioned')),
      status_reason text,
      health_status text NOT NULL DEFAULT 'unknown'
        CHECK (health_status IN ('healthy', 'degraded', 'unhealthy', 'unknown')),
      health_failures integer NOT NULL DEFAULT 0 CHECK (health_failures >= 0),
      last_health_check timestamptz,
      last_health_latency_ms integer,
      admin_user text,
      -- ciphertext only (see @tenantdb/secrets); the CHECK refuses anything that is not.
      admin_password_enc text CHECK (admin_password_enc LIKE 'v1.%'),
      admin_database text NOT NULL DEFAULT 'postgres',
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      provisioned_at timestamptz,
      last_allocated_at timestamptz,
      deleted_at timestamptz,
      CONSTRAINT db_servers_capacity CHECK (0 <= current_instances AND current_instances <= max_instances),
      CONSTRAINT db_servers_dedicated_owner CHECK (server_type <> 'dedicated' OR dedicated_to_instance_id IS NOT NULL)
    )
  `.execute(db);
  await sql`CREATE UNIQUE INDEX db_servers_dedicated_instance ON db_servers (dedicated_to_instance_id)
            WHERE dedicated_to_instance_id IS NOT NULL`.execute(db);
  // The allocation query reads only placeable shared pools, in priority order.
  await sql`CREATE INDEX db_servers_placeable ON db_servers (priority, current_instances)
            WHERE status = 'active' AND server_type = 'shared' AND allocation_strategy = 'auto'`.execute(db);
  await sql`CREATE INDEX db_servers_status ON db_servers (status, server_type)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE db_servers`.execute(db);
}

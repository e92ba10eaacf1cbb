// Plan tiers: where a tenant goes (shared pool or dedicated server), its connection limit and,
// for dedicated plans, the server size. Seeded here, editable through the admin API.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE plans (
      plan_tier text PRIMARY KEY CHECK (plan_tier ~ '^[a-z][a-z0-9_-]{0,31}$'),
      placement text NOT NULL CHECK (placement IN ('shared', 'dedicated')),
      connection_limit integer NOT NULL CHECK (connection_limit BETWEEN 1 AND 10000),
      cpu_limit numeric(6, 2) CHECK (cpu_limit > 0),
      memory_limit_mb integer CHECK (memory_limit_mb > 0),
      storage_size_gb integer CHECK (storage_size_gb > 0),
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )
  `.execute(db);
  await sql`
    INSERT INTO plans (plan_tier, placement, connection_limit, cpu_limit, memory_limit_mb, storage_size_gb) VALUES
      ('free',         'shared',     5,   NULL, NULL, NULL),
      ('starter',      'shared',     10,  NULL, NULL, NULL),
      ('standard',     'shared',     20,  NULL, NULL, NULL),
      ('professional', 'shared',     40,  NULL, NULL, NULL),
      ('premium',      'dedicated',  100, 2,    4096, 50),
      ('enterprise',   'dedicated',  200, 4,    8192, 200)
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE plans`.execute(db);
}

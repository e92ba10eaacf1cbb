// Per-tenant usage and access (issue 17): the latest sample (size, connections, when), the
// quota ladder state, suspension, and whether the pool server has been brought in line with
// those (access_pending: the catalog changed first, the server not yet; the reconciler finishes
// it). access_arrangement says how the tenant's roles are laid out on the server: 1 the login
// role owns the database (before this migration), 2 a NOLOGIN owner role with the login role as
// a member (packages/pool-server access.sql.ts); rows made from now on are 2.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE tenant_databases
      ADD COLUMN size_bytes bigint CHECK (size_bytes >= 0),
      ADD COLUMN active_connections integer CHECK (active_connections >= 0),
      ADD COLUMN usage_sampled_at timestamptz,
      ADD COLUMN quota_state text NOT NULL DEFAULT 'ok' CHECK (quota_state IN ('ok', 'warned', 'restricted')),
      ADD COLUMN quota_state_at timestamptz,
      ADD COLUMN over_quota_since timestamptz,
      ADD COLUMN suspended_at timestamptz,
      ADD COLUMN access_pending boolean NOT NULL DEFAULT false,
      ADD COLUMN access_arrangement smallint NOT NULL DEFAULT 1 CHECK (access_arrangement IN (1, 2))`.execute(
    db,
  );
  await sql`ALTER TABLE tenant_databases ALTER COLUMN access_arrangement SET DEFAULT 2`.execute(db);
  // The sampler's walk of one server (least recently sampled first) and "largest tenants".
  await sql`CREATE INDEX tenant_databases_server_sampled ON tenant_databases (db_server_id, usage_sampled_at NULLS FIRST)
            WHERE status = 'ready'`.execute(db);
  await sql`CREATE INDEX tenant_databases_server_size ON tenant_databases (db_server_id, size_bytes DESC NULLS LAST)
            WHERE status = 'ready'`.execute(db);
  // What the reconciler finishes: few rows, found without a scan.
  await sql`CREATE INDEX tenant_databases_access_pending ON tenant_databases (updated_at)
            WHERE access_pending`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX tenant_databases_access_pending`.execute(db);
  await sql`DROP INDEX tenant_databases_server_size`.execute(db);
  await sql`DROP INDEX tenant_databases_server_sampled`.execute(db);
  await sql`ALTER TABLE tenant_databases DROP COLUMN size_bytes, DROP COLUMN active_connections,
      DROP COLUMN usage_sampled_at, DROP COLUMN quota_state, DROP COLUMN quota_state_at, DROP COLUMN over_quota_since,
      DROP COLUMN suspended_at, DROP COLUMN access_pending, DROP COLUMN access_arrangement`.execute(db);
}

// What a server can do in a move: its PostgreSQL major (filled at provisioning and registration
// from server_version_num; before provisioning, the major asked for) and whether it runs with
// wal_level = logical (a move source or target by logical replication; null: not known yet).
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE db_servers
              ADD COLUMN postgres_major integer CHECK (postgres_major BETWEEN 10 AND 99),
              ADD COLUMN logical_replication boolean`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE db_servers DROP COLUMN postgres_major, DROP COLUMN logical_replication`.execute(db);
}

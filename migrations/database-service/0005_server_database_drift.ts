// The last measured difference between tenant databases on a server and the catalog rows for
// them. Kept in the catalog, not in one worker's memory, so every replica reports the same
// tenantdb_catalog_drift and a value never goes stale in a replica that stopped checking.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE db_servers ADD COLUMN database_drift integer`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE db_servers DROP COLUMN database_drift`.execute(db);
}

// Warm databases ready to hand out are a few per pool among every tenant row the catalog keeps
// (history included: 500,000 rows in `pnpm bench:scale`). Without an index of their own, counting
// them — tenantdb_warm_databases, on every scrape of every worker replica — read the whole table.
// This one holds those rows alone, in the order a reservation claims them on a pool.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX tenant_databases_warm_ready ON tenant_databases (db_server_id, created_at)
             WHERE status = 'warm' AND ready_at IS NOT NULL`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX tenant_databases_warm_ready`.execute(db);
}

// Drain that empties a server (issue 15): the status `drained` (a server with no tenant left,
// out of placement and capacity, ready for decommission) and the drain's own record on the row:
// when it started, who asked, and what the drain-server job last found in its way (blocked).
import { type Kysely, sql } from 'kysely';

const BEFORE = `'provisioning', 'initializing', 'active', 'full', 'cordoned', 'draining', 'maintenance',
  'error', 'decommissioning', 'decommissioned'`;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE db_servers DROP CONSTRAINT db_servers_status_check`.execute(db);
  await sql`ALTER TABLE db_servers ADD CONSTRAINT db_servers_status_check
              CHECK (status IN (${sql.raw(BEFORE)}, 'drained'))`.execute(db);
  await sql`ALTER TABLE db_servers
              ADD COLUMN drain_started_at timestamptz,
              ADD COLUMN drain_requested_by text,
              ADD COLUMN drain_checked_at timestamptz,
              ADD COLUMN drain_finished_at timestamptz,
              ADD COLUMN drain_blocked jsonb NOT NULL DEFAULT '[]'::jsonb`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`UPDATE db_servers SET status = 'draining' WHERE status = 'drained'`.execute(db);
  await sql`ALTER TABLE db_servers DROP CONSTRAINT db_servers_status_check`.execute(db);
  await sql`ALTER TABLE db_servers ADD CONSTRAINT db_servers_status_check
              CHECK (status IN (${sql.raw(BEFORE)}))`.execute(db);
  await sql`ALTER TABLE db_servers
              DROP COLUMN drain_started_at, DROP COLUMN drain_requested_by, DROP COLUMN drain_checked_at,
              DROP COLUMN drain_finished_at, DROP COLUMN drain_blocked`.execute(db);
}

// Indexes for a large fleet (`pnpm bench:scale`, 10,000 servers): the reservation read every
// placeable pool and sorted them on each allocation (~10 ms of CPU at 10k servers); these give it
// the order directly, one index per placement strategy since the fill ratio sorts the other way
// for each. The predicate is the reservation's own WHERE, so the planner can use them. The pools
// list pages by (priority, name) instead of sorting the whole table.
import { type Kysely, sql } from 'kysely';

const PLACEABLE = sql`status = 'active' AND server_type = 'shared' AND allocation_strategy = 'auto'
                      AND health_status IN ('healthy', 'unknown')`;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX db_servers_placeable`.execute(db);
  await sql`CREATE INDEX db_servers_placement_pack
              ON db_servers (priority, (current_instances::float8 / max_instances) DESC, id)
           WHERE ${PLACEABLE}`.execute(db);
  await sql`CREATE INDEX db_servers_placement_spread
              ON db_servers (priority, (current_instances::float8 / max_instances) ASC, id)
           WHERE ${PLACEABLE}`.execute(db);
  await sql`CREATE INDEX db_servers_priority_name ON db_servers (priority, name)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX db_servers_priority_name`.execute(db);
  await sql`DROP INDEX db_servers_placement_spread`.execute(db);
  await sql`DROP INDEX db_servers_placement_pack`.execute(db);
  await sql`CREATE INDEX db_servers_placeable ON db_servers (priority, current_instances)
            WHERE status = 'active' AND server_type = 'shared' AND allocation_strategy = 'auto'`.execute(db);
}

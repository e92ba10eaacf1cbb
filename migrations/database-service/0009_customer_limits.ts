// Limits on what one customer can make (issue 14): per-plan overrides of the configured
// per-customer limits, the indexes their counts read, and a dedicated server per *live* instance.
// Before this, the unique index on dedicated_to_instance_id also held decommissioned rows, so an
// instance whose dedicated server failed and was cleaned up could never get another one.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // NULL: the configured default (TENANTDB_MAX_INSTANCES_PER_CUSTOMER, …) applies.
  await sql`ALTER TABLE plans
              ADD COLUMN max_instances_per_customer integer CHECK (max_instances_per_customer >= 0),
              ADD COLUMN max_dedicated_servers_per_customer integer
                CHECK (max_dedicated_servers_per_customer >= 0)`.execute(db);
  await sql`DROP INDEX db_servers_dedicated_instance`.execute(db);
  await sql`CREATE UNIQUE INDEX db_servers_dedicated_instance ON db_servers (dedicated_to_instance_id)
            WHERE dedicated_to_instance_id IS NOT NULL AND status <> 'decommissioned'`.execute(db);
  // The per-customer counts, each read under the customer's lock on every request that makes one.
  await sql`CREATE INDEX db_servers_dedicated_customer ON db_servers (dedicated_to_customer_id)
            WHERE dedicated_to_customer_id IS NOT NULL AND status <> 'decommissioned'`.execute(db);
  await sql`CREATE INDEX tenant_databases_held_customer ON tenant_databases (customer_id)
            WHERE status IN ('creating', 'ready')`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX tenant_databases_held_customer`.execute(db);
  await sql`DROP INDEX db_servers_dedicated_customer`.execute(db);
  // Fails while an instance has a decommissioned server and a newer one: that history is what
  // the old index could not hold.
  await sql`DROP INDEX db_servers_dedicated_instance`.execute(db);
  await sql`CREATE UNIQUE INDEX db_servers_dedicated_instance ON db_servers (dedicated_to_instance_id)
            WHERE dedicated_to_instance_id IS NOT NULL`.execute(db);
  await sql`ALTER TABLE plans DROP COLUMN max_instances_per_customer,
              DROP COLUMN max_dedicated_servers_per_customer`.execute(db);
}

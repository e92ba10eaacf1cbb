// Slot drift (current_instances minus the rows holding a slot) as reconcile last measured it, kept
// on the server row beside database_drift: tenantdb_catalog_drift then reads stored values on each
// scrape instead of counting tenant rows. The partial index holds only servers with drift of either
// kind, so the scrape reads those alone however large the fleet.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // A constant default: no table rewrite.
  await sql`ALTER TABLE db_servers ADD COLUMN slot_drift integer NOT NULL DEFAULT 0`.execute(db);
  // The drift there is now, so the metric does not lose it until the first reconcile. Only drifted
  // servers are written (none, on a healthy catalog).
  await sql`
    UPDATE db_servers s
       SET slot_drift = m.drift
      FROM (SELECT s.id, s.current_instances - count(t.id)::int AS drift
              FROM db_servers s
              LEFT JOIN tenant_databases t
                ON t.db_server_id = s.id AND t.status IN ('creating', 'ready', 'releasing')
             WHERE s.status <> 'decommissioned'
             GROUP BY s.id) m
     WHERE s.id = m.id AND m.drift <> 0`.execute(db);
  await sql`CREATE INDEX db_servers_drifted ON db_servers (name)
             WHERE database_drift <> 0 OR slot_drift <> 0`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX db_servers_drifted`.execute(db);
  await sql`ALTER TABLE db_servers DROP COLUMN slot_drift`.execute(db);
}

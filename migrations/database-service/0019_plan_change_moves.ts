// Plan changes that change placement (shared ⇄ dedicated) are tenant moves that carry the plan
// they apply: `plan_tier` is written onto the tenant row (with its connection limit) in the
// cut-over's transaction. A move to a dedicated server that is still being provisioned waits in
// `awaiting_target`, holding no slot (a server that is not active has none to give), until the
// server is active (then it takes its slot and goes on as any move) or failed (then it ends).
import { type Kysely, sql } from 'kysely';

const PHASES = `'pending', 'copying_schema', 'syncing', 'cutting_over', 'cleaning_up', 'grace',
  'dropping_source', 'done', 'cancelling', 'cancelled', 'failing', 'failed'`;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE tenant_moves ADD COLUMN plan_tier text REFERENCES plans (plan_tier)`.execute(db);
  await sql`CREATE INDEX tenant_moves_plan ON tenant_moves (plan_tier) WHERE plan_tier IS NOT NULL`.execute(
    db,
  );
  await sql`ALTER TABLE tenant_moves DROP CONSTRAINT tenant_moves_phase_check`.execute(db);
  await sql`ALTER TABLE tenant_moves ADD CONSTRAINT tenant_moves_phase_check
            CHECK (phase IN (${sql.raw(PHASES)}, 'awaiting_target'))`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DELETE FROM tenant_moves WHERE phase = 'awaiting_target'`.execute(db);
  await sql`ALTER TABLE tenant_moves DROP CONSTRAINT tenant_moves_phase_check`.execute(db);
  await sql`ALTER TABLE tenant_moves ADD CONSTRAINT tenant_moves_phase_check
            CHECK (phase IN (${sql.raw(PHASES)}))`.execute(db);
  await sql`ALTER TABLE tenant_moves DROP COLUMN plan_tier`.execute(db);
}

// A rotation's new password is stored here (encrypted) before the pool server gets it, and moved
// to password_enc once it has: a crash between the two leaves the row marked, and reconcile finds
// which of the two passwords the role has (or gives it the pending one) and settles the row.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE tenant_databases
              ADD COLUMN password_pending_enc text CHECK (password_pending_enc LIKE 'v1.%')`.execute(db);
  // Reconcile's search for rows a crashed rotation left: few rows, so a partial index.
  await sql`CREATE INDEX tenant_databases_pending_password ON tenant_databases (updated_at)
             WHERE password_pending_enc IS NOT NULL`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX tenant_databases_pending_password`.execute(db);
  await sql`ALTER TABLE tenant_databases DROP COLUMN password_pending_enc`.execute(db);
}

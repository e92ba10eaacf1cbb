// Secrets written from now on are SecretBox v2: the ciphertext is bound to the id of the row that
// holds it (AES-GCM associated data), so one copied into another row does not decrypt. v1 values
// written before stay valid and readable. The CHECKs that refuse plaintext accept both forms.
import { type Kysely, sql } from 'kysely';

const COLUMNS = [
  ['db_servers', 'admin_password_enc'],
  ['tenant_databases', 'password_enc'],
  ['tenant_databases', 'password_pending_enc'],
  ['fleet_ca', 'key_enc'],
  ['server_certificates', 'key_enc'],
] as const;

const constraint = (table: string, column: string) => sql.id(`${table}_${column}_check`);

export async function up(db: Kysely<unknown>): Promise<void> {
  for (const [table, column] of COLUMNS) {
    await sql`ALTER TABLE ${sql.table(table)} DROP CONSTRAINT ${constraint(table, column)},
                ADD CONSTRAINT ${constraint(table, column)}
                CHECK (${sql.ref(column)} LIKE 'v1.%' OR ${sql.ref(column)} LIKE 'v2.%')`.execute(db);
  }
}

/** Back to v1 only: fails while any v2 value is stored (they cannot be turned back into v1). */
export async function down(db: Kysely<unknown>): Promise<void> {
  for (const [table, column] of COLUMNS) {
    await sql`ALTER TABLE ${sql.table(table)} DROP CONSTRAINT ${constraint(table, column)},
                ADD CONSTRAINT ${constraint(table, column)} CHECK (${sql.ref(column)} LIKE 'v1.%')`.execute(
      db,
    );
  }
}

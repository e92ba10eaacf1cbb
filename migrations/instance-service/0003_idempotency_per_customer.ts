// An Idempotency-Key names a create request of one customer: two customers may use the same key
// for two different instances. The unique index moves from (idempotency_key) to
// (customer_id, idempotency_key).
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE UNIQUE INDEX instances_customer_idempotency_key ON instances (customer_id, idempotency_key)
            WHERE idempotency_key IS NOT NULL`.execute(db);
  await sql`DROP INDEX instances_idempotency_key`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // Fails while two customers hold the same key: which one keeps it is not ours to decide.
  await sql`CREATE UNIQUE INDEX instances_idempotency_key ON instances (idempotency_key)
            WHERE idempotency_key IS NOT NULL`.execute(db);
  await sql`DROP INDEX instances_customer_idempotency_key`.execute(db);
}

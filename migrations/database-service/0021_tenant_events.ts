// The outbox of the events a tenant's changes send to the portal (quota ladder, suspension): a
// row is written in the transaction that makes the change and marked queued once its
// deliver-tenant-event job is in Redis. A process that dies between the commit and the queue
// leaves the row unqueued, and the reconciler queues it; its delivery_id (the job id, and
// X-Tenantdb-Delivery) makes a repeat one delivery.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE TABLE tenant_events (
      delivery_id text PRIMARY KEY CHECK (delivery_id ~ '^[A-Za-z0-9_-]{1,120}$'),
      instance_id uuid NOT NULL,
      event text NOT NULL,
      occurred_at timestamptz NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      queued_at timestamptz
    )`.execute(db);
  await sql`CREATE INDEX tenant_events_unqueued ON tenant_events (created_at) WHERE queued_at IS NULL`.execute(
    db,
  );
  await sql`CREATE INDEX tenant_events_queued ON tenant_events (queued_at) WHERE queued_at IS NOT NULL`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE tenant_events`.execute(db);
}

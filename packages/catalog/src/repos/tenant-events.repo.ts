// The outbox of events to the portal (migration 0021): written in the transaction of the change
// they tell of (UsageRepo's transitions), marked queued once the job that delivers them is in
// Redis; the reconciler queues what a crash left unqueued, and forgets queued ones after a while.
import { sql } from 'kysely';
import type { CatalogDb, Executor } from '../db';

export type TenantEventsRepo = ReturnType<typeof createTenantEventsRepo>;

/** One event for one instance: what deliver-tenant-event carries. */
export interface TenantEventRecord {
  instance_id: string;
  event: string;
  occurred_at: string;
  /** One per change: the job id, so a repeat is one delivery. */
  delivery_id: string;
}

export function createTenantEventsRepo(db: CatalogDb) {
  return {
    /** In the change's transaction; a repeat of the same change records nothing more. */
    async record(event: TenantEventRecord, trx: Executor = db): Promise<void> {
      await trx
        .insertInto('tenant_events')
        .values({ ...event, occurred_at: new Date(event.occurred_at) })
        .onConflict((oc) => oc.column('delivery_id').doNothing())
        .execute();
    },

    async markQueued(deliveryId: string, trx: Executor = db): Promise<void> {
      await trx
        .updateTable('tenant_events')
        .set({ queued_at: sql<Date>`now()` })
        .where('delivery_id', '=', deliveryId)
        .where('queued_at', 'is', null)
        .execute();
    },

    /** Events written before `before` and not queued yet (their process died first), oldest first. */
    async findUnqueued(before: Date, limit: number, trx: Executor = db): Promise<TenantEventRecord[]> {
      const rows = await trx
        .selectFrom('tenant_events')
        .select(['instance_id', 'event', 'occurred_at', 'delivery_id'])
        .where('queued_at', 'is', null)
        .where('created_at', '<', before)
        .orderBy('created_at')
        .limit(limit)
        .execute();
      return rows.map((r) => ({ ...r, occurred_at: r.occurred_at.toISOString() }));
    },

    /** Forgets events queued before `before` (their job has long run); how many. */
    async pruneQueued(before: Date, trx: Executor = db): Promise<number> {
      const result = await trx.deleteFrom('tenant_events').where('queued_at', '<', before).executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}

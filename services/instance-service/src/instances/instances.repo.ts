// Reads and status changes of instances. Every change is an UPDATE … WHERE status IN (from): a
// concurrent change (a delete while the database is being allocated) is decided, never overwritten.
import type { InstanceStatus } from '@tenantdb/contracts';
import { sql } from 'kysely';
import type { Executor, InstanceRow, InstancesDb, NewAuditEvent, NewInstanceRow } from '../db';

export type InstancesRepo = ReturnType<typeof createInstancesRepo>;

export const WAITING: readonly InstanceStatus[] = ['pending', 'waiting_for_database'];

const now = () => sql<Date>`now()`;

/** A callback is due when the instance reaches a final state, and only if it has a URL. */
const callbackDue = sql<'pending' | null>`CASE WHEN callback_url IS NOT NULL THEN 'pending' END`;

export function createInstancesRepo(db: InstancesDb) {
  return {
    insert(row: NewInstanceRow, trx: Executor = db): Promise<InstanceRow> {
      return trx.insertInto('instances').values(row).returningAll().executeTakeFirstOrThrow();
    },

    findById(id: string, trx: Executor = db): Promise<InstanceRow | undefined> {
      return trx.selectFrom('instances').selectAll().where('id', '=', id).executeTakeFirst();
    },

    /** The instance only if it belongs to the customer: another customer's id reads as absent. */
    findForCustomer(id: string, customerId: string, trx: Executor = db): Promise<InstanceRow | undefined> {
      return trx
        .selectFrom('instances')
        .selectAll()
        .where('id', '=', id)
        .where('customer_id', '=', customerId)
        .executeTakeFirst();
    },

    /** The customer's instance created with this Idempotency-Key (keys are per customer). */
    findByIdempotencyKey(
      customerId: string,
      key: string,
      trx: Executor = db,
    ): Promise<InstanceRow | undefined> {
      return trx
        .selectFrom('instances')
        .selectAll()
        .where('customer_id', '=', customerId)
        .where('idempotency_key', '=', key)
        .executeTakeFirst();
    },

    async list(q: {
      customerId: string;
      status?: InstanceStatus;
      limit: number;
      offset: number;
    }): Promise<{ rows: InstanceRow[]; total: number }> {
      const base = db
        .selectFrom('instances')
        .where('customer_id', '=', q.customerId)
        .$if(q.status !== undefined, (b) => b.where('status', '=', q.status!));
      const [rows, count] = await Promise.all([
        base
          .selectAll()
          .orderBy('created_at', 'desc')
          .orderBy('id')
          .limit(q.limit)
          .offset(q.offset)
          .execute(),
        base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
      ]);
      return { rows, total: Number(count.n) };
    },

    /** The database-service answered "provisioning" or could not be reached: still waiting. */
    markWaiting(id: string, reason: string): Promise<InstanceRow | undefined> {
      return db
        .updateTable('instances')
        .set({ status: 'waiting_for_database', wait_reason: reason.slice(0, 500), updated_at: now() })
        .where('id', '=', id)
        .where('status', 'in', WAITING)
        .returningAll()
        .executeTakeFirst();
    },

    markReady(
      id: string,
      database: {
        tenant_database_id: string | null;
        db_server_id: string;
        db_host: string;
        db_port: number;
        db_name: string;
        db_user: string;
      },
    ): Promise<InstanceRow | undefined> {
      return db
        .updateTable('instances')
        .set({
          ...database,
          status: 'ready',
          wait_reason: null,
          ready_at: now(),
          updated_at: now(),
          callback_status: callbackDue,
        })
        .where('id', '=', id)
        .where('status', 'in', WAITING)
        .returningAll()
        .executeTakeFirst();
    },

    markFailed(id: string, reason: string): Promise<InstanceRow | undefined> {
      return db
        .updateTable('instances')
        .set({
          status: 'failed',
          error: reason.slice(0, 1000),
          failed_at: now(),
          updated_at: now(),
          callback_status: callbackDue,
        })
        .where('id', '=', id)
        .where('status', 'in', WAITING)
        .returningAll()
        .executeTakeFirst();
    },

    /** Any instance not yet deleting or deleted starts deleting; undefined when it already was. */
    markDeleting(id: string, trx: Executor = db): Promise<InstanceRow | undefined> {
      return trx
        .updateTable('instances')
        .set({ status: 'deleting', wait_reason: null, updated_at: now() })
        .where('id', '=', id)
        .where('status', 'not in', ['deleting', 'deleted'])
        .returningAll()
        .executeTakeFirst();
    },

    /** deleting → deleted, once database-service released the database. */
    markDeleted(id: string): Promise<InstanceRow | undefined> {
      return db
        .updateTable('instances')
        .set({ status: 'deleted', deleted_at: now(), updated_at: now() })
        .where('id', '=', id)
        .where('status', '=', 'deleting')
        .returningAll()
        .executeTakeFirst();
    },

    async markReleaseVerified(id: string): Promise<void> {
      await db
        .updateTable('instances')
        .set({ release_verified_at: now(), updated_at: now() })
        .where('id', '=', id)
        .where('status', 'in', ['failed', 'deleted'])
        .execute();
    },

    /** Counts a delivery attempt before it is made (a crash mid-delivery still counts). */
    async countCallbackAttempt(id: string): Promise<number | undefined> {
      const row = await db
        .updateTable('instances')
        .set((eb) => ({ callback_attempts: eb('callback_attempts', '+', 1) }))
        .where('id', '=', id)
        .where('callback_status', '=', 'pending')
        .returning('callback_attempts')
        .executeTakeFirst();
      return row?.callback_attempts;
    },

    async settleCallback(id: string, outcome: 'delivered' | 'failed', error: string | null): Promise<void> {
      await db
        .updateTable('instances')
        .set({
          callback_status: outcome,
          callback_error: error?.slice(0, 500) ?? null,
          ...(outcome === 'delivered' ? { callback_delivered_at: now() } : {}),
        })
        .where('id', '=', id)
        .where('callback_status', '=', 'pending')
        .execute();
    },

    async noteCallbackError(id: string, error: string): Promise<void> {
      await db
        .updateTable('instances')
        .set({ callback_error: error.slice(0, 500) })
        .where('id', '=', id)
        .execute();
    },

    /**
     * A ready instance's database moved (or changed plan): its address and plan as database-service
     * answers them now, for the same tenant database only. Undefined when nothing was changed.
     */
    updateDatabase(
      id: string,
      database: {
        tenant_database_id: string;
        db_server_id: string;
        db_host: string;
        db_port: number;
        plan_tier: string | null;
      },
      trx: Executor = db,
    ): Promise<InstanceRow | undefined> {
      const { tenant_database_id: tenantId, plan_tier: planTier, ...address } = database;
      return trx
        .updateTable('instances')
        .set({ ...address, ...(planTier ? { plan_tier: planTier } : {}), updated_at: now() })
        .where('id', '=', id)
        .where('status', '=', 'ready')
        .where((eb) => eb.or([eb('tenant_database_id', '=', tenantId), eb('tenant_database_id', 'is', null)]))
        .returningAll()
        .executeTakeFirst();
    },

    /** The instance's plan, once database-service applied a change within its placement. */
    setPlan(id: string, planTier: string, trx: Executor = db): Promise<InstanceRow | undefined> {
      return trx
        .updateTable('instances')
        .set({ plan_tier: planTier, updated_at: now() })
        .where('id', '=', id)
        .where('status', '=', 'ready')
        .returningAll()
        .executeTakeFirst();
    },

    /** A create whose job could not be enqueued is taken back before anyone saw it. */
    async deleteUnstarted(id: string): Promise<void> {
      await db.deleteFrom('instances').where('id', '=', id).where('status', '=', 'pending').execute();
    },

    /**
     * Instances whose status has work left (waiting for a database, a release to make or verify),
     * oldest change first: for the sweep that re-enqueues lost jobs. Pending callbacks are read
     * apart (pendingCallbacks), so however many there are they never crowd these out of the limit.
     */
    unsettled(limit: number): Promise<Pick<InstanceRow, 'id' | 'status' | 'release_verified_at'>[]> {
      return db
        .selectFrom('instances')
        .select(['id', 'status', 'release_verified_at'])
        .where((eb) =>
          eb.or([
            eb('status', 'in', ['pending', 'waiting_for_database', 'deleting']),
            eb.and([eb('status', 'in', ['failed', 'deleted']), eb('release_verified_at', 'is', null)]),
          ]),
        )
        .orderBy('updated_at')
        .limit(limit)
        .execute();
    },

    /** Instances whose callback is still to be delivered, oldest change first: for the sweep. */
    async pendingCallbacks(limit: number): Promise<string[]> {
      const rows = await db
        .selectFrom('instances')
        .select('id')
        .where('callback_status', '=', 'pending')
        .orderBy('updated_at')
        .limit(limit)
        .execute();
      return rows.map((r) => r.id);
    },

    async countByStatus(): Promise<{ status: InstanceStatus; n: number }[]> {
      const rows = await db
        .selectFrom('instances')
        .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
        .groupBy('status')
        .execute();
      return rows.map((r) => ({ status: r.status, n: Number(r.n) }));
    },

    async audit(event: NewAuditEvent, trx: Executor = db): Promise<void> {
      await trx.insertInto('audit_events').values(event).execute();
    },
  };
}

import { type Insertable, sql } from 'kysely';
import type { CatalogDb, Executor } from '../db';
import type { AuditEvent, Plan, PlansTable } from '../types';
import { HELD_STATUSES } from '../types';

export type PlansRepo = ReturnType<typeof createPlansRepo>;

/** What an admin may set on a plan (the name and timestamps are the repo's). */
export type PlanFields = Omit<
  Insertable<PlansTable>,
  'plan_tier' | 'created_at' | 'updated_at' | 'retired_at'
>;

/** The result of retiring a plan: retired, already retired, unknown, or still in use. */
export type Retirement =
  | { kind: 'retired'; plan: Plan }
  | { kind: 'unknown' }
  | { kind: 'in-use'; liveTenants: number };

export function createPlansRepo(db: CatalogDb) {
  return {
    find(planTier: string, trx: Executor = db): Promise<Plan | undefined> {
      return trx.selectFrom('plans').selectAll().where('plan_tier', '=', planTier).executeTakeFirst();
    },

    /** Every plan's name and placement, by name: what GET /api/database/plans answers (not retired ones). */
    list(trx: Executor = db): Promise<Pick<Plan, 'plan_tier' | 'placement'>[]> {
      return trx
        .selectFrom('plans')
        .select(['plan_tier', 'placement'])
        .where('retired_at', 'is', null)
        .orderBy('plan_tier')
        .execute();
    },

    /** Every plan with every field, retired ones when asked: the admin list. */
    listAll(opts: { includeRetired: boolean }, trx: Executor = db): Promise<Plan[]> {
      let q = trx.selectFrom('plans').selectAll().orderBy('plan_tier');
      if (!opts.includeRetired) q = q.where('retired_at', 'is', null);
      return q.execute();
    },

    /**
     * The largest connection limit of the plans placed on `placement`: what a server of that kind
     * is sized for (a shared pool takes tenants of every shared plan). Undefined without plans.
     */
    async maxConnectionLimit(placement: Plan['placement'], trx: Executor = db): Promise<number | undefined> {
      const row = await trx
        .selectFrom('plans')
        .select((eb) => eb.fn.max('connection_limit').as('limit'))
        .where('placement', '=', placement)
        .executeTakeFirst();
      return row?.limit ?? undefined;
    },

    /** A new plan and its audit event in one transaction; undefined when the name is taken. */
    create(
      plan: PlanFields & { plan_tier: string },
      audit: (row: Plan) => AuditEvent,
    ): Promise<Plan | undefined> {
      return db.transaction().execute(async (trx) => {
        const row = await trx
          .insertInto('plans')
          .values(plan)
          .onConflict((oc) => oc.column('plan_tier').doNothing())
          .returningAll()
          .executeTakeFirst();
        if (row) await trx.insertInto('audit_events').values(audit(row)).execute();
        return row;
      });
    },

    /**
     * Changes a live plan's fields and records the audit event, in one transaction; the row
     * before and after, or undefined when there is no such live plan.
     */
    update(
      planTier: string,
      fields: Partial<PlanFields>,
      audit: (before: Plan, after: Plan) => AuditEvent,
    ): Promise<{ before: Plan; after: Plan } | undefined> {
      return db.transaction().execute(async (trx) => {
        const before = await trx
          .selectFrom('plans')
          .selectAll()
          .where('plan_tier', '=', planTier)
          .where('retired_at', 'is', null)
          .forUpdate()
          .executeTakeFirst();
        if (!before) return undefined;
        const after = await trx
          .updateTable('plans')
          .set({ ...fields, updated_at: sql`now()` })
          .where('plan_tier', '=', planTier)
          .returningAll()
          .executeTakeFirstOrThrow();
        await trx.insertInto('audit_events').values(audit(before, after)).execute();
        return { before, after };
      });
    },

    /**
     * Retires a plan no live tenant uses (holding or releasing a slot); a repeat answers the
     * retired plan again. Allocate refuses a retired plan from the row it reads before reserving
     * (no lock on the hot path), so an allocate that read the plan just before this commits can
     * still land one tenant on it: the plan row stays, and that tenant keeps working.
     */
    retire(planTier: string, audit: (row: Plan) => AuditEvent): Promise<Retirement> {
      return db.transaction().execute(async (trx): Promise<Retirement> => {
        const plan = await trx
          .selectFrom('plans')
          .selectAll()
          .where('plan_tier', '=', planTier)
          .forUpdate()
          .executeTakeFirst();
        if (!plan) return { kind: 'unknown' };
        if (plan.retired_at) return { kind: 'retired', plan };
        const live = await trx
          .selectFrom('tenant_databases')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('plan_tier', '=', planTier)
          .where('status', 'in', [...HELD_STATUSES, 'releasing'])
          .executeTakeFirstOrThrow();
        if (Number(live.n) > 0) return { kind: 'in-use', liveTenants: Number(live.n) };
        const row = await trx
          .updateTable('plans')
          .set({ retired_at: sql`now()`, updated_at: sql`now()` })
          .where('plan_tier', '=', planTier)
          .returningAll()
          .executeTakeFirstOrThrow();
        await trx.insertInto('audit_events').values(audit(row)).execute();
        return { kind: 'retired', plan: row };
      });
    },
  };
}

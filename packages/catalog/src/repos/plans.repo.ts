import type { CatalogDb, Executor } from '../db';
import type { Plan } from '../types';

export type PlansRepo = ReturnType<typeof createPlansRepo>;

export function createPlansRepo(db: CatalogDb) {
  return {
    find(planTier: string, trx: Executor = db): Promise<Plan | undefined> {
      return trx.selectFrom('plans').selectAll().where('plan_tier', '=', planTier).executeTakeFirst();
    },

    /** Every plan's name and placement, by name: what GET /api/database/plans answers. */
    list(trx: Executor = db): Promise<Pick<Plan, 'plan_tier' | 'placement'>[]> {
      return trx.selectFrom('plans').select(['plan_tier', 'placement']).orderBy('plan_tier').execute();
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
  };
}

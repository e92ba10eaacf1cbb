import type { CatalogDb, Executor } from '../db';
import type { Plan } from '../types';

export type PlansRepo = ReturnType<typeof createPlansRepo>;

export function createPlansRepo(db: CatalogDb) {
  return {
    find(planTier: string, trx: Executor = db): Promise<Plan | undefined> {
      return trx.selectFrom('plans').selectAll().where('plan_tier', '=', planTier).executeTakeFirst();
    },
  };
}

// GET /api/database/plans (allocate scope): the plan names an allocate may use, so a caller
// (instance-service) can refuse an unknown plan_tier at once instead of failing later.
import type { PlansRepo } from '@tenantdb/catalog';
import { PlanList } from '@tenantdb/contracts';
import type { HttpApp } from '@tenantdb/http';

export function plansRoutes(app: HttpApp, plans: Pick<PlansRepo, 'list'>): void {
  app.get(
    '/api/database/plans',
    {
      config: { scope: 'allocate' },
      schema: {
        summary: 'The plans an allocate may name (plan_tier and placement only)',
        tags: ['allocations'],
        response: { 200: PlanList },
      },
    },
    async () => ({ plans: await plans.list() }),
  );
}

// GET /api/database/plans (allocate scope): the plan names an allocate may use, so a caller
// (instance-service) can refuse an unknown plan_tier at once instead of failing later.
// /api/database/admin/plans…: plans through the admin API (admin; reads admin:read).
import type { PlansRepo } from '@tenantdb/catalog';
import {
  AdminPlanAnswer,
  AdminPlanList,
  CreatePlanRequest,
  PlanList,
  PlanParams,
  PlansQuery,
  UpdatePlanRequest,
} from '@tenantdb/contracts';
import { requestContext as ctx, type HttpApp } from '@tenantdb/http';
import type { PlansService } from './plans.service';

const tags = ['plans'];

export function plansRoutes(app: HttpApp, plans: Pick<PlansRepo, 'list'>, service: PlansService): void {
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

  app.get(
    '/api/database/admin/plans',
    {
      config: { scope: 'admin:read' },
      schema: {
        summary: 'Every plan, all fields',
        tags,
        querystring: PlansQuery,
        response: { 200: AdminPlanList },
      },
    },
    async (request) => ({ plans: await service.list(request.query.include_retired === 'true') }),
  );

  app.get(
    '/api/database/admin/plans/:plan_tier',
    {
      config: { scope: 'admin:read' },
      schema: { summary: 'One plan', tags, params: PlanParams, response: { 200: AdminPlanAnswer } },
    },
    async (request) => ({ plan: await service.get(request.params.plan_tier) }),
  );

  app.post(
    '/api/database/admin/plans',
    {
      config: { scope: 'admin' },
      schema: { summary: 'Create a plan', tags, body: CreatePlanRequest, response: { 201: AdminPlanAnswer } },
    },
    async (request, reply) => {
      const plan = await service.create(request.body, ctx(request));
      reply.status(201);
      return { plan };
    },
  );

  app.patch(
    '/api/database/admin/plans/:plan_tier',
    {
      config: { scope: 'admin' },
      schema: {
        summary: "Change a plan's fields (its tenants follow: connection limit, quota, guardrails)",
        tags,
        params: PlanParams,
        body: UpdatePlanRequest,
        response: { 200: AdminPlanAnswer },
      },
    },
    async (request) => ({ plan: await service.update(request.params.plan_tier, request.body, ctx(request)) }),
  );

  app.delete(
    '/api/database/admin/plans/:plan_tier',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Retire a plan no live tenant uses (409 otherwise); it takes no new allocations',
        tags,
        params: PlanParams,
        response: { 200: AdminPlanAnswer },
      },
    },
    async (request) => ({ plan: await service.retire(request.params.plan_tier, ctx(request)) }),
  );
}

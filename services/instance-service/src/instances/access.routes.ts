// POST /api/v1/instances/{id}/suspend · /resume · /plan (portal scope, the customer's own instance only).
import {
  CustomerQuery,
  ErrorResponse,
  InstanceIdParams,
  InstancePlanChange,
  InstancePlanRequest,
  InstanceSuspension,
} from '@tenantdb/contracts';
import { requestContext as ctx, type HttpApp } from '@tenantdb/http';
import type { InstanceAccess } from './access';
import type { InstancePlan } from './plan';

export function instanceAccessRoutes(
  app: HttpApp,
  setSuspended: InstanceAccess,
  changePlan: InstancePlan,
): void {
  app.post(
    '/api/v1/instances/:id/plan',
    {
      config: { scope: 'portal' },
      schema: {
        summary:
          "Change the instance's plan: at once within its placement (200), or by moving its database between shared and dedicated servers (202; a database.moved callback follows)",
        tags: ['instances'],
        params: InstanceIdParams,
        querystring: CustomerQuery,
        body: InstancePlanRequest,
        response: {
          200: InstancePlanChange,
          202: InstancePlanChange,
          400: ErrorResponse,
          404: ErrorResponse,
          409: ErrorResponse,
          429: ErrorResponse,
          503: ErrorResponse,
        },
      },
    },
    async (request, reply) => {
      const { moving, answer } = await changePlan(
        request.params.id,
        request.query.customer_id,
        request.body.plan_tier,
        ctx(request),
      );
      return reply.code(moving ? 202 : 200).send(answer);
    },
  );

  for (const [action, suspended] of [
    ['suspend', true],
    ['resume', false],
  ] as const) {
    app.post(
      `/api/v1/instances/:id/${action}`,
      {
        config: { scope: 'portal' },
        schema: {
          summary: suspended
            ? "Suspend the instance's database: no login, open sessions ended, data kept"
            : "Resume the instance's database: the same credentials log in again",
          tags: ['instances'],
          params: InstanceIdParams,
          querystring: CustomerQuery,
          response: { 200: InstanceSuspension, 404: ErrorResponse, 409: ErrorResponse, 503: ErrorResponse },
        },
      },
      async (request) => setSuspended(request.params.id, request.query.customer_id, suspended, ctx(request)),
    );
  }
}

// POST /api/v1/instances/{id}/suspend · /resume (portal scope, the customer's own instance only).
import { CustomerQuery, ErrorResponse, InstanceIdParams, InstanceSuspension } from '@tenantdb/contracts';
import { requestContext as ctx, type HttpApp } from '@tenantdb/http';
import type { InstanceAccess } from './access';

export function instanceAccessRoutes(app: HttpApp, setSuspended: InstanceAccess): void {
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

// Usage and access of allocations, and a server's usage (admin; reads admin:read):
//   GET  /api/database/admin/allocations/{instance_id}/usage
//   POST /api/database/admin/allocations/{instance_id}/suspend · /resume · /plan (202 when it moves)
//   GET  /api/database/admin/pools/{id}/usage
import {
  AllocationUsage,
  ChangePlanRequest,
  ErrorResponse,
  InstanceParams,
  PlanChangeStarted,
  PoolParams,
  ServerUsage,
  ServerUsageQuery,
} from '@tenantdb/contracts';
import { requestContext as ctx, type HttpApp } from '@tenantdb/http';
import type { AccessService } from './access.service';

const tags = ['usage and access'];
const changed = { 200: AllocationUsage, 409: ErrorResponse, 503: ErrorResponse };

export function accessRoutes(app: HttpApp, service: AccessService): void {
  app.get(
    '/api/database/admin/allocations/:instance_id/usage',
    {
      config: { scope: 'admin:read' },
      schema: {
        summary: "An allocation's latest usage sample, quota state and suspension",
        tags,
        params: InstanceParams,
        response: { 200: AllocationUsage },
      },
    },
    async (request) => service.usage(request.params.instance_id),
  );

  app.post(
    '/api/database/admin/allocations/:instance_id/suspend',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Suspend: no login, open sessions ended, data kept (idempotent)',
        tags,
        params: InstanceParams,
        response: changed,
      },
    },
    async (request) => service.suspend(request.params.instance_id, ctx(request)),
  );

  app.post(
    '/api/database/admin/allocations/:instance_id/resume',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Resume: the same credentials log in again (idempotent)',
        tags,
        params: InstanceParams,
        response: changed,
      },
    },
    async (request) => service.resume(request.params.instance_id, ctx(request)),
  );

  app.post(
    '/api/database/admin/allocations/:instance_id/plan',
    {
      config: { scope: 'admin' },
      schema: {
        summary:
          'Change the plan: within its placement at once (200); to the other placement by a move of the tenant (202)',
        tags,
        params: InstanceParams,
        body: ChangePlanRequest,
        response: { ...changed, 202: PlanChangeStarted, 404: ErrorResponse, 429: ErrorResponse },
      },
    },
    async (request, reply) => {
      const result = await service.changePlan(
        request.params.instance_id,
        request.body.plan_tier,
        ctx(request),
      );
      if (result.kind === 'moving') return reply.code(202).send(result.change);
      return result.usage;
    },
  );

  app.get(
    '/api/database/admin/pools/:id/usage',
    {
      config: { scope: 'admin:read' },
      schema: {
        summary: "A server's sampled total against its storage size, and its largest tenants",
        tags,
        params: PoolParams,
        querystring: ServerUsageQuery,
        response: { 200: ServerUsage },
      },
    },
    async (request) => service.serverUsage(request.params.id, request.query.limit),
  );
}

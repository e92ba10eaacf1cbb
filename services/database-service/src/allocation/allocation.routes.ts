import {
  Allocated,
  AllocateRequest,
  Allocation,
  AllocationCredentials,
  ErrorResponse,
  InstanceParams,
  ProvisionDedicatedRequest,
  Provisioned,
  Provisioning,
  Released,
  Rotated,
} from '@tenantdb/contracts';
import { requestContext as ctx, type HttpApp } from '@tenantdb/http';
import type { AllocationService } from './allocation.service';

const allocate = { scope: 'allocate' } as const;

export function allocationRoutes(app: HttpApp, service: AllocationService): void {
  app.post(
    '/api/database/allocate',
    {
      config: allocate,
      schema: {
        summary: 'Allocate a tenant database for an instance (idempotent per instance_id)',
        tags: ['allocations'],
        body: AllocateRequest,
        // 409: another customer's instance, or the customer at its limit; 429: the fleet's limits.
        response: { 200: Allocated, 202: Provisioning, 409: ErrorResponse, 429: ErrorResponse },
      },
    },
    async (request, reply) => {
      const answer = await service.allocate(request.body, ctx(request));
      if (answer.status === 'provisioning')
        reply.status(202).header('retry-after', String(answer.retry_after));
      return answer;
    },
  );

  app.post(
    '/api/database/provision-dedicated',
    {
      config: allocate,
      schema: {
        summary: 'Provision a dedicated server for an instance; 202 until it is active, then 200',
        tags: ['allocations'],
        body: ProvisionDedicatedRequest,
        response: { 200: Provisioned, 202: Provisioning, 409: ErrorResponse, 429: ErrorResponse },
      },
    },
    async (request, reply) => {
      const answer = await service.provisionDedicated(request.body, ctx(request));
      if (answer.status === 'provisioning')
        reply.status(202).header('retry-after', String(answer.retry_after));
      return answer;
    },
  );

  app.get(
    '/api/database/allocations/:instance_id',
    {
      config: allocate,
      schema: {
        summary: 'The allocation of an instance and its status (no password)',
        tags: ['allocations'],
        params: InstanceParams,
        response: { 200: Allocation },
      },
    },
    async (request) => service.get(request.params.instance_id),
  );

  app.get(
    '/api/database/allocations/:instance_id/credentials',
    {
      config: allocate,
      schema: {
        summary:
          'The credentials of a ready allocation, read again (audited; 404 without one, 409 while creating or releasing)',
        tags: ['allocations'],
        params: InstanceParams,
        response: { 200: AllocationCredentials, 404: ErrorResponse, 409: ErrorResponse },
      },
    },
    async (request) => service.readCredentials(request.params.instance_id, ctx(request)),
  );

  app.delete(
    '/api/database/allocations/:instance_id',
    {
      config: allocate,
      schema: {
        summary: 'Release: drop the database and role, free the slot (idempotent)',
        tags: ['allocations'],
        params: InstanceParams,
        response: { 200: Released },
      },
    },
    async (request) => {
      await service.release(request.params.instance_id, ctx(request));
      return { status: 'released' as const, instance_id: request.params.instance_id };
    },
  );

  app.post(
    '/api/database/allocations/:instance_id/rotate-credentials',
    {
      config: allocate,
      schema: {
        summary: 'Set a new password (applied before it is returned; the old one stops working)',
        tags: ['allocations'],
        params: InstanceParams,
        response: { 200: Rotated },
      },
    },
    async (request) => service.rotate(request.params.instance_id, ctx(request)),
  );
}

import {
  CreateInstanceHeaders,
  CreateInstanceRequest,
  CustomerQuery,
  ErrorResponse,
  Instance,
  InstanceCredentials,
  InstanceIdParams,
  InstanceList,
  ListInstancesQuery,
} from '@tenantdb/contracts';
import { requestContext as ctx, type HttpApp } from '@tenantdb/http';
import type { InstancesService } from './instances.service';

const portal = { scope: 'portal' } as const;
const tags = ['instances'];

export function instancesRoutes(app: HttpApp, service: InstancesService): void {
  const location = (i: Instance) => `/api/v1/instances/${i.id}?customer_id=${i.customer_id}`;

  app.post(
    '/api/v1/instances',
    {
      config: portal,
      schema: {
        summary: 'Create an instance: 202 with it pending while its database is allocated',
        description:
          "With an Idempotency-Key header, a repeat with the same key and body answers the same instance; the same key with another body is 422. Keys are per customer: another customer's key of the same value is another instance.",
        tags,
        headers: CreateInstanceHeaders,
        body: CreateInstanceRequest,
        response: { 202: Instance, 422: ErrorResponse },
      },
    },
    async (request, reply) => {
      const { instance, replayed } = await service.create(
        request.body,
        request.headers['idempotency-key'],
        ctx(request),
      );
      reply.status(202).header('location', location(instance));
      if (replayed) reply.header('idempotent-replayed', 'true');
      return instance;
    },
  );

  app.get(
    '/api/v1/instances',
    {
      config: portal,
      schema: {
        summary: "A customer's instances, newest first (paginated with limit and offset)",
        tags,
        querystring: ListInstancesQuery,
        response: { 200: InstanceList },
      },
    },
    async (request) => service.list(request.query),
  );

  app.get(
    '/api/v1/instances/:id',
    {
      config: portal,
      schema: {
        summary: 'One instance of the customer named by customer_id (another customer: 404)',
        tags,
        params: InstanceIdParams,
        querystring: CustomerQuery,
        response: { 200: Instance, 404: ErrorResponse },
      },
    },
    async (request) => service.get(request.params.id, request.query.customer_id),
  );

  app.post(
    '/api/v1/instances/:id/credentials',
    {
      config: portal,
      schema: {
        summary: 'The database password of a ready instance (every read is audited)',
        tags,
        params: InstanceIdParams,
        querystring: CustomerQuery,
        response: { 200: InstanceCredentials, 404: ErrorResponse, 409: ErrorResponse },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      return service.credentials(request.params.id, request.query.customer_id, ctx(request));
    },
  );

  app.delete(
    '/api/v1/instances/:id',
    {
      config: portal,
      schema: {
        summary: 'Delete: release the database, then deleted (200); 202 while the release is still pending',
        tags,
        params: InstanceIdParams,
        querystring: CustomerQuery,
        response: { 200: Instance, 202: Instance, 404: ErrorResponse },
      },
    },
    async (request, reply) => {
      const { instance, done } = await service.remove(
        request.params.id,
        request.query.customer_id,
        ctx(request),
      );
      reply.status(done ? 200 : 202);
      return instance;
    },
  );
}

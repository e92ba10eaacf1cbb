import {
  ApiKey,
  ApiKeyCreated,
  ApiKeyList,
  ApiKeyParams,
  ApiKeysQuery,
  CreateApiKeyRequest,
  IntrospectKeyAnswer,
  IntrospectKeyRequest,
} from '@tenantdb/contracts';
import { requestContext as ctx, type HttpApp } from '@tenantdb/http';
import { z } from 'zod';
import type { ApiKeysService } from './api-keys.service';

const tags = ['api keys'];

export function apiKeysRoutes(app: HttpApp, service: ApiKeysService): void {
  app.post(
    '/api/database/admin/api-keys',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Create a named API key (the key is in this answer only)',
        tags,
        body: CreateApiKeyRequest,
        response: { 201: ApiKeyCreated },
      },
    },
    async (request, reply) => {
      const created = await service.create(request.body, ctx(request));
      reply.status(201).header('cache-control', 'no-store');
      return created;
    },
  );

  app.get(
    '/api/database/admin/api-keys',
    {
      config: { scope: 'admin:read' },
      schema: {
        summary: 'List API keys (never the keys)',
        tags,
        querystring: ApiKeysQuery,
        response: { 200: ApiKeyList },
      },
    },
    async (request) => ({ api_keys: await service.list(request.query.include_revoked === 'true') }),
  );

  app.delete(
    '/api/database/admin/api-keys/:id',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Revoke an API key',
        tags,
        params: ApiKeyParams,
        response: { 200: z.object({ api_key: ApiKey }) },
      },
    },
    async (request) => ({ api_key: await service.revoke(request.params.id, ctx(request)) }),
  );

  app.post(
    '/api/database/api-keys/introspect',
    {
      config: { scope: 'allocate' },
      schema: {
        summary: 'Whether a key is usable, and its scopes (instance-service checks portal keys)',
        tags,
        body: IntrospectKeyRequest,
        response: { 200: IntrospectKeyAnswer },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      return service.introspect(request.body.key);
    },
  );
}

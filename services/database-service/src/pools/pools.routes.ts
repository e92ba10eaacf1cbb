import {
  CreatePoolRequest,
  HealthCheckResult,
  Pool,
  PoolAccepted,
  PoolDetail,
  PoolList,
  PoolParams,
  PoolsQuery,
  RegisterPoolRequest,
  Stats,
} from '@tenantdb/contracts';
import type { HttpApp } from '@tenantdb/http';
import { z } from 'zod';
import type { PoolsService } from './pools.service';

const admin = { scope: 'admin' } as const;
const tags = ['admin'];

export function poolsRoutes(app: HttpApp, service: PoolsService): void {
  const ctx = (request: { principal?: { name: string }; id: string }) => ({
    actor: request.principal?.name ?? 'unknown',
    requestId: request.id,
  });

  app.get(
    '/api/database/admin/pools',
    {
      config: admin,
      schema: { summary: 'List servers', tags, querystring: PoolsQuery, response: { 200: PoolList } },
    },
    async (request) => service.list(request.query),
  );

  app.get(
    '/api/database/admin/pools/:id',
    {
      config: admin,
      schema: {
        summary: 'One server with orchestrator details',
        tags,
        params: PoolParams,
        response: { 200: PoolDetail },
      },
    },
    async (request) => service.detail(request.params.id),
  );

  app.post(
    '/api/database/admin/pools',
    {
      config: admin,
      schema: {
        summary: 'Provision a new pool server (asynchronous)',
        tags,
        body: CreatePoolRequest,
        response: { 202: PoolAccepted },
      },
    },
    async (request, reply) => {
      const pool = await service.create(request.body, ctx(request));
      reply.status(202);
      return { status: 'provisioning' as const, pool };
    },
  );

  app.post(
    '/api/database/admin/pools/register',
    {
      config: admin,
      schema: {
        summary: 'Register an existing PostgreSQL server (driver external)',
        tags,
        body: RegisterPoolRequest,
        response: { 201: z.object({ pool: Pool }) },
      },
    },
    async (request, reply) => {
      const pool = await service.register(request.body, ctx(request));
      reply.status(201);
      return { pool };
    },
  );

  app.post(
    '/api/database/admin/pools/:id/health-check',
    {
      config: admin,
      schema: {
        summary: 'Run a real health check now',
        tags,
        params: PoolParams,
        response: { 200: HealthCheckResult },
      },
    },
    async (request) => service.healthCheck(request.params.id, ctx(request)),
  );

  app.get(
    '/api/database/admin/stats',
    { config: admin, schema: { summary: 'Fleet statistics', tags, response: { 200: Stats } } },
    async () => service.stats(),
  );
}

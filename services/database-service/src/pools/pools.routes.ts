import {
  CreatePoolRequest,
  DrainResult,
  ErrorResponse,
  HealthCheckResult,
  Pool,
  PoolAccepted,
  PoolDecommissioned,
  PoolDecommissioning,
  PoolDetail,
  PoolList,
  PoolParams,
  PoolsQuery,
  RegisterPoolRequest,
  Stats,
} from '@tenantdb/contracts';
import { requestContext as ctx, type HttpApp } from '@tenantdb/http';
import { z } from 'zod';
import type { PoolsService } from './pools.service';

const admin = { scope: 'admin' } as const;
/** Reads: `admin:read` (which `admin` implies) sees everything and can change nothing. */
const adminRead = { scope: 'admin:read' } as const;
const tags = ['admin'];
/** Answers of the operator routes besides the ones every scoped route documents. */
const refusals = { 404: ErrorResponse, 409: ErrorResponse };

export function poolsRoutes(app: HttpApp, service: PoolsService): void {
  app.get(
    '/api/database/admin/pools',
    {
      config: adminRead,
      schema: { summary: 'List servers', tags, querystring: PoolsQuery, response: { 200: PoolList } },
    },
    async (request) => service.list(request.query),
  );

  app.get(
    '/api/database/admin/pools/:id',
    {
      config: adminRead,
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
        summary:
          'Provision a new pool server (asynchronous; 429 at the fleet ceiling or the provisioning bound)',
        tags,
        body: CreatePoolRequest,
        response: { 202: PoolAccepted, 409: ErrorResponse, 429: ErrorResponse },
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

  app.post(
    '/api/database/admin/pools/:id/cordon',
    {
      config: admin,
      schema: {
        summary: 'Cordon a server: no new placements',
        description:
          'From active or full; already cordoned is success. Tenants on the server are untouched ' +
          'and keep working. 409 from any other status.',
        tags,
        params: PoolParams,
        response: { 200: Pool, ...refusals },
      },
    },
    async (request) => service.cordon(request.params.id, ctx(request)),
  );

  app.post(
    '/api/database/admin/pools/:id/uncordon',
    {
      config: admin,
      schema: {
        summary: 'Put a cordoned, draining or drained server back into placement',
        description:
          'The server becomes active, or full when it has no free slot; already active or full ' +
          'is success. A drain under way stops at its next step (moves already begun finish). ' +
          '409 from any other status.',
        tags,
        params: PoolParams,
        response: { 200: Pool, ...refusals },
      },
    },
    async (request) => service.uncordon(request.params.id, ctx(request)),
  );

  app.post(
    '/api/database/admin/pools/:id/drain',
    {
      config: admin,
      schema: {
        summary: 'Drain a server: no new placements, then every tenant moved off it, until it is drained',
        description:
          'From active, full or cordoned; already draining or drained is success. The server leaves ' +
          "placement at once; database-worker's drain-server job then drops its warm databases and " +
          'moves every tenant "anywhere with room" (at most TENANTDB_MOVES_PER_SERVER moves at once), ' +
          'and marks the server `drained` when nothing is left (ready for decommission). Progress is ' +
          'in `drain` here and in GET …/pools/{id}: tenants left, moves running and failed, and what ' +
          'blocks it (no pool with room, a tenant whose moves failed TENANTDB_DRAIN_MOVE_ATTEMPTS ' +
          'times); it waits rather than over-commit. Suspended and restricted tenants move and stay ' +
          'so on the target. Uncordon ' +
          'stops it (moves already begun finish). 409 for a dedicated server (emptied by a plan ' +
          'change of its tenant), a platform server, or one that is provisioning, decommissioning ' +
          'or decommissioned; 503 when the job queue is down (the server stays draining; retry).',
        tags,
        params: PoolParams,
        response: { 200: DrainResult, ...refusals, 503: ErrorResponse },
      },
    },
    async (request) => service.drain(request.params.id, ctx(request)),
  );

  app.delete(
    '/api/database/admin/pools/:id',
    {
      config: admin,
      schema: {
        summary: 'Decommission an empty server (asynchronous)',
        description:
          'Only when the server holds no tenant database (409 otherwise, naming how many remain) ' +
          'and is not still provisioning. Marks it decommissioning and queues its removal: the ' +
          'worker removes it through its driver (an external server is only forgotten, never ' +
          'touched). Repeating the call re-queues the removal; 503 when the queue is unavailable ' +
          '(the server stays decommissioning, retry). An already decommissioned server answers 200.',
        tags,
        params: PoolParams,
        response: { 200: PoolDecommissioned, 202: PoolDecommissioning, ...refusals },
      },
    },
    async (request, reply) => {
      const result = await service.decommission(request.params.id, ctx(request));
      reply.status(result.status === 'decommissioning' ? 202 : 200);
      return result;
    },
  );

  app.get(
    '/api/database/admin/stats',
    { config: adminRead, schema: { summary: 'Fleet statistics', tags, response: { 200: Stats } } },
    async () => service.stats(),
  );
}

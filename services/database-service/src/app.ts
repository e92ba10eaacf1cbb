// buildApp wires database-service from what it is given and does not listen; main.ts starts it.
import {
  type CatalogDb,
  createAuditRepo,
  createPlansRepo,
  createReservationsRepo,
  createServersRepo,
  createTenantDatabasesRepo,
} from '@tenantdb/catalog';
import { createHttpApp, type HttpApp } from '@tenantdb/http';
import type { Queues } from '@tenantdb/jobs';
import type { Logger, Registry } from '@tenantdb/observability';
import { createTenantOps, type PoolConnections } from '@tenantdb/pool-server';
import type { SecretBox } from '@tenantdb/secrets';
import { sql } from 'kysely';
import { allocationRoutes } from './allocation/allocation.routes';
import { createAllocationService } from './allocation/allocation.service';
import type { DatabaseServiceConfig } from './config';
import { createServiceMetrics } from './metrics';
import { poolsRoutes } from './pools/pools.routes';
import { createPoolsService } from './pools/pools.service';

export interface DatabaseServiceDeps {
  config: DatabaseServiceConfig;
  db: CatalogDb;
  queues: Queues;
  logger: Logger;
  registry: Registry;
  secrets: SecretBox;
  connections: PoolConnections;
}

export async function buildApp(deps: DatabaseServiceDeps): Promise<HttpApp> {
  const { config, db, queues, logger, registry, secrets, connections } = deps;
  const app = await createHttpApp({
    name: 'database-service',
    version: '0.1.0',
    description: 'Allocates tenant PostgreSQL databases on pool and dedicated servers.',
    logger,
    registry,
    tokens: [
      { name: 'admin', token: config.TENANTDB_ADMIN_TOKEN, scopes: ['admin', 'allocate'] },
      { name: 'allocate', token: config.TENANTDB_ALLOCATE_TOKEN, scopes: ['allocate'] },
    ],
    rateLimitPerMinute: config.TENANTDB_RATE_LIMIT_PER_MINUTE,
    bodyLimitBytes: config.TENANTDB_BODY_LIMIT_BYTES,
    readiness: {
      catalog: async () => {
        await sql`SELECT 1`.execute(db);
        return true;
      },
      redis: () => queues.ping(),
    },
  });

  const repos = {
    servers: createServersRepo(db),
    reservations: createReservationsRepo(db),
    tenants: createTenantDatabasesRepo(db),
    plans: createPlansRepo(db),
    audit: createAuditRepo(db),
  };
  const allocation = createAllocationService({
    db,
    ...repos,
    secrets,
    tenantOps: createTenantOps(connections),
    queues,
    metrics: createServiceMetrics(registry, db),
    logger,
    config: {
      strategy: config.TENANTDB_PLACEMENT_STRATEGY,
      retryAfterSeconds: config.TENANTDB_RETRY_AFTER_SECONDS,
      defaultDriver: config.TENANTDB_DEFAULT_DRIVER,
    },
  });
  const pools = createPoolsService({
    db,
    ...repos,
    secrets,
    connections,
    queues,
    config: { defaultDriver: config.TENANTDB_DEFAULT_DRIVER },
  });

  allocationRoutes(app, allocation);
  poolsRoutes(app, pools);
  return app;
}

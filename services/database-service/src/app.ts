// buildApp wires database-service from what it is given and does not listen; createDatabaseService
// builds what it runs on from its config (main.ts, the bench's service process and the tests).
import { openBackupStore } from '@tenantdb/backups';
import {
  type CatalogDb,
  createApiKeysRepo,
  createAuditRepo,
  createBackupsRepo,
  createCatalogDb,
  createDrainsRepo,
  createFleetRepo,
  createHealthRepo,
  createLimitsRepo,
  createMovesRepo,
  createPlansRepo,
  createReservationsRepo,
  createRestoresRepo,
  createServersRepo,
  createTenantDatabasesRepo,
  createTenantEventsRepo,
  createTlsRepo,
  createUsageRepo,
  createUsageStatsRepo,
  pingCatalog,
} from '@tenantdb/catalog';
import { createHttpApp, createOidcLookup, edgeOptions, type HttpApp, type TokenLookup } from '@tenantdb/http';
import { createQueues, type Queues } from '@tenantdb/jobs';
import { createRegistry, type Logger, type Registry, type ShutdownStep } from '@tenantdb/observability';
import {
  createPoolConnections,
  createTenantAccess,
  createTenantOps,
  type PoolConnections,
} from '@tenantdb/pool-server';
import { createSecretBox, type SecretBox } from '@tenantdb/secrets';
import { accessRoutes } from './access/access.routes';
import { createAccessService } from './access/access.service';
import { createPlacementChange } from './access/plan-change';
import { allocationRoutes } from './allocation/allocation.routes';
import { createAllocationService } from './allocation/allocation.service';
import { createDedicatedServerFor } from './allocation/dedicated-placement';
import { apiKeysRoutes } from './api-keys/api-keys.routes';
import { createApiKeysService } from './api-keys/api-keys.service';
import { backupsRoutes } from './backups/backups.routes';
import { createBackupsService } from './backups/backups.service';
import type { DatabaseServiceConfig } from './config';
import { createLimits, limitsConfig } from './limits';
import { createServiceMetrics } from './metrics';
import { movesRoutes } from './moves/moves.routes';
import { createMovesService } from './moves/moves.service';
import { plansRoutes } from './plans/plans.routes';
import { createPlansService } from './plans/plans.service';
import { poolsRoutes } from './pools/pools.routes';
import { createPoolsService } from './pools/pools.service';
import { tlsRoutes } from './tls/tls.routes';

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
  const apiKeys = createApiKeysService({
    apiKeys: createApiKeysRepo(db),
    logger,
    config: { cacheMs: config.TENANTDB_API_KEY_CACHE_MS },
  });
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
    tokenLookups: [apiKeys.lookup, ...oidcLookup(config)],
    ...edgeOptions(config, queues),
    bodyLimitBytes: config.TENANTDB_BODY_LIMIT_BYTES,
    readiness: {
      catalog: () => pingCatalog(db),
      redis: () => queues.ping(),
    },
  });

  const repos = {
    servers: createServersRepo(db),
    health: createHealthRepo(db),
    reservations: createReservationsRepo(db),
    tenants: createTenantDatabasesRepo(db),
    plans: createPlansRepo(db),
    audit: createAuditRepo(db),
    tls: createTlsRepo(db),
    moves: createMovesRepo(db),
    backups: createBackupsRepo(db),
    restores: createRestoresRepo(db),
    drains: createDrainsRepo(db),
  };
  const limits = createLimits({ limits: createLimitsRepo(), config: limitsConfig(config) });
  const allocation = createAllocationService({
    db,
    ...repos,
    secrets,
    tenantOps: createTenantOps(connections),
    queues,
    metrics: createServiceMetrics(registry, createFleetRepo(db)),
    logger,
    config: {
      strategy: config.TENANTDB_PLACEMENT_STRATEGY,
      retryAfterSeconds: config.TENANTDB_RETRY_AFTER_SECONDS,
      defaultDriver: config.TENANTDB_DEFAULT_DRIVER,
      releaseLockTimeoutMs: config.TENANTDB_RELEASE_LOCK_TIMEOUT_MS,
      heartbeatMs: config.TENANTDB_ALLOCATION_HEARTBEAT_MS,
    },
    limits,
  });
  const pools = createPoolsService({
    db,
    ...repos,
    secrets,
    connections,
    queues,
    limits,
    config: { defaultDriver: config.TENANTDB_DEFAULT_DRIVER },
  });

  const moves = createMovesService({
    db,
    ...repos,
    queues,
    config: {
      movesPerServer: config.TENANTDB_MOVES_PER_SERVER,
      strategy: config.TENANTDB_PLACEMENT_STRATEGY,
    },
  });

  const backupsService = createBackupsService({
    db,
    ...repos,
    queues,
    store: openBackupStore(config),
  });

  allocationRoutes(app, allocation);
  movesRoutes(app, moves);
  backupsRoutes(app, backupsService);
  plansRoutes(
    app,
    repos.plans,
    createPlansService({
      plans: repos.plans,
      planChanged: async (planTier) => {
        await queues.enqueue('apply-plan', { plan_tier: planTier });
      },
    }),
  );
  tlsRoutes(app, repos.tls);
  poolsRoutes(app, pools);
  apiKeysRoutes(app, apiKeys);
  accessRoutes(
    app,
    createAccessService({
      ...repos,
      usage: createUsageRepo(db),
      events: createTenantEventsRepo(db),
      stats: createUsageStatsRepo(db),
      access: createTenantAccess(connections),
      queues,
      changePlacement: createPlacementChange({
        dedicatedServerFor: createDedicatedServerFor({
          ...repos,
          limits,
          config: { defaultDriver: config.TENANTDB_DEFAULT_DRIVER },
        }),
        moves,
        queues,
      }),
    }),
  );
  return app;
}

function oidcLookup(config: DatabaseServiceConfig): TokenLookup[] {
  if (!config.TENANTDB_OIDC_ISSUER) return [];
  return [
    createOidcLookup({
      issuer: config.TENANTDB_OIDC_ISSUER,
      audience: config.TENANTDB_OIDC_AUDIENCE,
      scopeClaim: config.TENANTDB_OIDC_SCOPE_CLAIM,
      scopeMap: config.TENANTDB_OIDC_SCOPE_MAP,
      clockSkewSeconds: config.TENANTDB_OIDC_CLOCK_SKEW_SECONDS,
      jwksCacheSeconds: config.TENANTDB_OIDC_JWKS_CACHE_SECONDS,
    }),
  ];
}

export interface DatabaseService extends Omit<DatabaseServiceDeps, 'config' | 'logger'> {
  app: HttpApp;
  /** Stop taking requests first, close the catalog last: for installShutdown. */
  shutdownSteps: ShutdownStep[];
  /** Runs the shutdown steps; a failing one does not stop the rest. */
  close(): Promise<void>;
}

/** database-service and the connections it runs on (catalog, Redis, pool servers), not listening yet. */
export async function createDatabaseService(
  config: DatabaseServiceConfig,
  logger: Logger,
): Promise<DatabaseService> {
  const db = createCatalogDb({
    url: config.DATABASE_URL,
    poolSize: config.TENANTDB_CATALOG_POOL_SIZE,
    acquireTimeoutMs: config.TENANTDB_CATALOG_ACQUIRE_TIMEOUT_MS,
    applicationName: 'database-service',
  });
  const secrets = createSecretBox(config.TENANTDB_ENCRYPTION_KEYS);
  // failFast: while Redis is down an enqueue fails at once and the API answers 503.
  const queues = createQueues({
    redisUrl: config.REDIS_URL,
    prefix: config.TENANTDB_QUEUE_PREFIX,
    failFast: true,
  });
  // Admin connections over TLS with the fleet CA where the server has its certificate.
  const trust = createTlsRepo(db);
  const connections = createPoolConnections(secrets, {
    tls: {
      mode: config.TENANTDB_POOL_ADMIN_TLS,
      caOf: async (serverId) => (await trust.serverTrust(serverId))?.ca_pem,
    },
  });
  const registry = createRegistry('database-service');
  const connectionSteps: ShutdownStep[] = [
    { name: 'queues', run: () => queues.close() },
    { name: 'pool connections', run: () => connections.close() },
    { name: 'catalog', run: () => db.destroy() },
  ];
  const runAll = async (steps: ShutdownStep[]) => {
    for (const step of steps) await step.run().catch(() => {});
  };
  let app: HttpApp;
  try {
    app = await buildApp({ config, db, queues, logger, registry, secrets, connections });
  } catch (err) {
    await runAll(connectionSteps);
    throw err;
  }
  const shutdownSteps = [{ name: 'http', run: () => app.close() }, ...connectionSteps];
  return {
    app,
    db,
    queues,
    registry,
    secrets,
    connections,
    shutdownSteps,
    close: () => runAll(shutdownSteps),
  };
}

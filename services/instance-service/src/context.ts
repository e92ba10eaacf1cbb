// The composition root of instance-service: everything the routes and the job handlers use, built
// once from configuration (main.ts), or from a test's configuration.
import { readFileSync } from 'node:fs';
import { createDatabaseServiceClient, type DatabaseServiceClient } from '@tenantdb/contracts';
import { createQueues, type Queues } from '@tenantdb/jobs';
import { createRegistry, type Logger, type Registry } from '@tenantdb/observability';
import { Agent, fetch as undiciFetch } from 'undici';
import { type HostResolver, systemResolver } from './callbacks/resolve-target';
import { type CallbackTargets, createCallbackTargets } from './callbacks/targets';
import type { InstanceServiceConfig } from './config';
import { createInstancesDb, type InstancesDb } from './db';
import { createInstancesRepo, type InstancesRepo } from './instances/instances.repo';
import { createPlanCatalog, type PlanCatalog } from './instances/plans';
import { createInstanceMetrics, type InstanceMetrics } from './metrics';

export interface InstanceServiceDeps {
  config: InstanceServiceConfig;
  db: InstancesDb;
  repo: InstancesRepo;
  queues: Queues;
  databaseService: DatabaseServiceClient;
  /** The plan names database-service knows (a short cache), to refuse an unknown plan at create. */
  plans: PlanCatalog;
  callbackTargets: CallbackTargets;
  /** How a callback's host name is resolved (once per delivery attempt). */
  resolveHost: HostResolver;
  metrics: InstanceMetrics;
  registry: Registry;
  logger: Logger;
}

const MAX_BACKOFF_MS = 5_000;

export function createDeps(
  config: InstanceServiceConfig,
  logger: Logger,
  overrides: Partial<Pick<InstanceServiceDeps, 'resolveHost'>> = {},
): InstanceServiceDeps {
  const db = createInstancesDb({
    url: config.DATABASE_URL,
    poolSize: config.TENANTDB_CATALOG_POOL_SIZE,
    acquireTimeoutMs: config.TENANTDB_CATALOG_ACQUIRE_TIMEOUT_MS,
    applicationName: 'instance-service',
  });
  const registry = createRegistry('instance-service');
  const repo = createInstancesRepo(db);
  const metrics = createInstanceMetrics(registry, repo);
  const databaseService = createDatabaseServiceClient({
    baseUrl: config.DATABASE_SERVICE_URL,
    token: config.TENANTDB_ALLOCATE_TOKEN,
    timeoutMs: config.TENANTDB_DATABASE_SERVICE_TIMEOUT_MS,
    retries: config.TENANTDB_DATABASE_SERVICE_RETRIES,
    maxBackoffMs: MAX_BACKOFF_MS,
    onAttempt: metrics.databaseServiceAttempt,
    ...(config.TENANTDB_DATABASE_SERVICE_CA_FILE
      ? { fetch: fetchTrusting(readFileSync(config.TENANTDB_DATABASE_SERVICE_CA_FILE, 'utf8')) }
      : {}),
  });
  return {
    config,
    db,
    repo,
    queues: createQueues({
      redisUrl: config.REDIS_URL,
      prefix: config.TENANTDB_QUEUE_PREFIX,
      failFast: true,
    }),
    databaseService,
    plans: createPlanCatalog(databaseService),
    callbackTargets: createCallbackTargets(config.TENANTDB_CALLBACK_ALLOWED_HOSTS),
    resolveHost: overrides.resolveHost ?? systemResolver,
    metrics,
    registry,
    logger,
  };
}

/**
 * How long after an instance failed or was deleted a request to database-service sent before
 * may still arrive there (every attempt of one client call, with its backoffs). A release is
 * checked again after this, so an allocation that lands late is released too.
 */
export function settleMs(config: InstanceServiceConfig): number {
  const attempts = config.TENANTDB_DATABASE_SERVICE_RETRIES + 1;
  return attempts * config.TENANTDB_DATABASE_SERVICE_TIMEOUT_MS + (attempts - 1) * MAX_BACKOFF_MS + 1_000;
}

/** fetch that verifies HTTPS servers against `caPem` (and host names as usual), not the system CAs. */
export function fetchTrusting(caPem: string): typeof globalThis.fetch {
  const dispatcher = new Agent({ connect: { ca: caPem } });
  return ((input: string, init?: RequestInit) =>
    undiciFetch(input, { ...(init as object), dispatcher })) as unknown as typeof globalThis.fetch;
}

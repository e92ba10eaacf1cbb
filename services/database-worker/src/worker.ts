// createWorker wires database-worker from configuration and does not start consuming; main.ts
// (or a test) calls start() and stop().
import { openBackupStore } from '@tenantdb/backups';
import {
  type CatalogDb,
  createAuditRepo,
  createBackupsRepo,
  createCatalogDb,
  createDrainsRepo,
  createFleetRepo,
  createHealthRepo,
  createLimitsRepo,
  createMovesRepo,
  createPlansRepo,
  createRestoresRepo,
  createRetirementRepo,
  createServersRepo,
  createTenantDatabasesRepo,
  createTenantEventsRepo,
  createTlsRepo,
  createUsageRepo,
  createUsageStatsRepo,
  pingCatalog,
} from '@tenantdb/catalog';
import { createHttpApp, type HttpApp } from '@tenantdb/http';
import { type Consumers, createQueues, type KeptSchedules } from '@tenantdb/jobs';
import { createRegistry, type Logger } from '@tenantdb/observability';
import {
  type ClientTools,
  createPoolConnections,
  createTenantAccess,
  createTenantOps,
  findClientTools,
} from '@tenantdb/pool-server';
import {
  createKubernetesProvisioner,
  createLocalProvisioner,
  createSwarmProvisioner,
  loadKubeConfig,
  type Provisioner,
  type ProvisionerDriver,
} from '@tenantdb/provisioners';
import { createSecretBox } from '@tenantdb/secrets';
import type { WorkerConfig } from './config';
import type { WorkerDeps } from './context';
import { applyPlan } from './jobs/apply-plan';
import { backupTenant } from './jobs/backup/backup-tenant';
import { restoreTenant } from './jobs/backup/restore-tenant';
import { scheduleBackups } from './jobs/backup/schedule-backups';
import { verifyBackups } from './jobs/backup/verify-backups';
import { cleanupFailedServers } from './jobs/cleanup-failed-servers';
import { decommissionServer } from './jobs/decommission-server';
import { drainServer } from './jobs/drain-server';
import { growSharedCapacity } from './jobs/grow-shared-capacity';
import { boundHealthChecks, healthCheckAll, healthCheckServer } from './jobs/health-check';
import { moveTenant } from './jobs/move/move-tenant';
import { provisionServer } from './jobs/provision-server';
import { reconcile } from './jobs/reconcile';
import { refillWarmDatabases } from './jobs/refill-warm-databases';
import { sampleUsageAll, sampleUsageServer } from './jobs/sample-usage';
import { createWorkerMetrics } from './metrics';
import { type Handlers, keepWorkerSchedules, startWorkers } from './runtime';
import { createServerCertificates } from './tls/server-certificates';

export interface DatabaseWorker {
  deps: WorkerDeps;
  handlers: Handlers;
  app: HttpApp;
  /** Installs the schedules and starts consuming the three queues. */
  start(): Promise<void>;
  /** Stops taking work, lets jobs in hand finish, closes connections. */
  stop(): Promise<void>;
}

/**
 * The drivers TENANTDB_DRIVERS enables, in its order: the first is the one the capacity planner
 * provisions shared pools with. Servers of a driver that is not enabled fail their jobs with a
 * reason (database-service's TENANTDB_DEFAULT_DRIVER must name an enabled one).
 */
export function createDrivers(config: WorkerConfig): Map<ProvisionerDriver, Provisioner> {
  const build: Record<ProvisionerDriver, () => Provisioner> = {
    local: () => createLocalProvisioner({ root: config.TENANTDB_LOCAL_ROOT }),
    swarm: () =>
      createSwarmProvisioner({
        docker: {
          url: config.TENANTDB_SWARM_DOCKER_HOST,
          ...(config.TENANTDB_SWARM_DOCKER_TLS_DIR ? { tlsDir: config.TENANTDB_SWARM_DOCKER_TLS_DIR } : {}),
        },
        image: config.TENANTDB_SWARM_IMAGE,
        fleet: config.TENANTDB_SWARM_FLEET,
        publishMode: config.TENANTDB_SWARM_PUBLISH_MODE,
        ...(config.TENANTDB_SWARM_NETWORK ? { network: config.TENANTDB_SWARM_NETWORK } : {}),
        ...(config.TENANTDB_SWARM_CONNECT_HOST ? { connectHost: config.TENANTDB_SWARM_CONNECT_HOST } : {}),
        portRange: config.TENANTDB_SWARM_PORT_RANGE,
        constraints: [...config.TENANTDB_SWARM_CONSTRAINTS],
        pinToNode: config.TENANTDB_SWARM_PIN_TO_NODE,
        limits: { cpus: config.TENANTDB_SWARM_CPU_LIMIT, memoryMb: config.TENANTDB_SWARM_MEMORY_LIMIT_MB },
        reservations: {
          cpus: config.TENANTDB_SWARM_CPU_RESERVATION,
          memoryMb: config.TENANTDB_SWARM_MEMORY_RESERVATION_MB,
        },
        restartDelayMs: config.TENANTDB_SWARM_RESTART_DELAY_MS,
        volumeDriver: config.TENANTDB_SWARM_VOLUME_DRIVER,
        postgresUid: config.TENANTDB_SWARM_POSTGRES_UID,
        volumeRemoval: config.TENANTDB_SWARM_VOLUME_REMOVAL,
        startTimeoutMs: config.TENANTDB_SWARM_START_TIMEOUT_MS,
      }),
    kubernetes: () =>
      createKubernetesProvisioner({
        kubeConfig: loadKubeConfig({
          kubeconfig: config.TENANTDB_K8S_KUBECONFIG,
          ...(config.TENANTDB_K8S_CONTEXT ? { context: config.TENANTDB_K8S_CONTEXT } : {}),
        }),
        namespace: config.TENANTDB_K8S_NAMESPACE,
        mode: config.TENANTDB_K8S_MODE,
        image:
          config.TENANTDB_K8S_IMAGE ??
          (config.TENANTDB_K8S_MODE === 'cnpg'
            ? 'ghcr.io/cloudnative-pg/postgresql:15'
            : 'postgres:15-alpine'),
        ...(config.TENANTDB_K8S_STORAGE_CLASS ? { storageClass: config.TENANTDB_K8S_STORAGE_CLASS } : {}),
        storageSizeGb: config.TENANTDB_K8S_STORAGE_SIZE_GB,
        runAsUser: config.TENANTDB_K8S_RUN_AS_USER,
        limits: { cpus: config.TENANTDB_K8S_CPU_LIMIT, memoryMb: config.TENANTDB_K8S_MEMORY_LIMIT_MB },
        requests: { cpus: config.TENANTDB_K8S_CPU_REQUEST, memoryMb: config.TENANTDB_K8S_MEMORY_REQUEST_MB },
        nodeSelector: { ...config.TENANTDB_K8S_NODE_SELECTOR },
        volumeRemoval: config.TENANTDB_K8S_VOLUME_REMOVAL,
      }),
  };
  return new Map(config.TENANTDB_DRIVERS.map((name) => [name, build[name]()] as const));
}

export async function createWorker(
  config: WorkerConfig,
  logger: Logger,
  opts: { db?: CatalogDb; drivers?: Map<ProvisionerDriver, Provisioner> } = {},
): Promise<DatabaseWorker> {
  const db =
    opts.db ??
    createCatalogDb({ url: config.DATABASE_URL, poolSize: 10, applicationName: 'database-worker' });
  const secrets = createSecretBox(config.TENANTDB_ENCRYPTION_KEYS);
  const queues = createQueues({
    redisUrl: config.REDIS_URL,
    prefix: config.TENANTDB_QUEUE_PREFIX,
    failFast: false,
  });
  // Admin connections over TLS with the fleet CA where the server has its certificate.
  const trust = createTlsRepo(db);
  const connections = createPoolConnections(secrets, {
    tls: {
      mode: config.TENANTDB_POOL_ADMIN_TLS,
      caOf: async (serverId) => (await trust.serverTrust(serverId))?.ca_pem,
    },
  });
  const registry = createRegistry('database-worker');
  const fleet = createFleetRepo(db);
  const tls = createTlsRepo(db);
  const usage = createUsageRepo(db);
  const drains = createDrainsRepo(db);
  let tools: Promise<ClientTools[]> | undefined;
  const clientTools = () => {
    tools ??= findClientTools({ dirs: config.TENANTDB_CLIENT_TOOL_DIRS });
    return tools;
  };
  const deps: WorkerDeps = {
    config,
    db,
    servers: createServersRepo(db),
    fleet,
    health: createHealthRepo(db),
    limits: createLimitsRepo(),
    tenants: createTenantDatabasesRepo(db),
    moves: createMovesRepo(db),
    backups: createBackupsRepo(db),
    restores: createRestoresRepo(db),
    backupStore: openBackupStore(config),
    drains,
    plans: createPlansRepo(db),
    retirement: createRetirementRepo(db),
    audit: createAuditRepo(db),
    tls,
    certificates: createServerCertificates(
      { tls, secrets },
      { validityDays: config.TENANTDB_SERVER_CERT_DAYS },
    ),
    secrets,
    connections,
    tenantOps: createTenantOps(connections),
    tenantAccess: createTenantAccess(connections),
    usage,
    tenantEvents: createTenantEventsRepo(db),
    queues,
    drivers: opts.drivers ?? createDrivers(config),
    metrics: createWorkerMetrics(
      registry,
      fleet,
      queues,
      tls,
      createUsageStatsRepo(db),
      drains,
      createBackupsRepo(db),
    ),
    logger,
    clientTools,
  };
  const handlers: Handlers = {
    'provision-server': provisionServer(deps),
    'grow-shared-capacity': growSharedCapacity(deps),
    'refill-warm-databases': refillWarmDatabases(deps),
    'decommission-server': decommissionServer(deps),
    'health-check-all': healthCheckAll(deps),
    'health-check-server': healthCheckServer(deps),
    'cleanup-failed-servers': cleanupFailedServers(deps),
    reconcile: reconcile(deps),
    'sample-usage-all': sampleUsageAll(deps),
    'sample-usage-server': sampleUsageServer(deps),
    'apply-plan': applyPlan(deps),
    'move-tenant': moveTenant(deps),
    'backup-tenant': backupTenant(deps),
    'restore-tenant': restoreTenant(deps),
    'schedule-backups': scheduleBackups(deps),
    'verify-backups': verifyBackups(deps),
    'drain-server': drainServer(deps),
  };
  const app = await createHttpApp({
    name: 'database-worker',
    version: '0.1.0',
    description: 'Provisions, checks and cleans up the Postgres servers of the tenantdb fleet.',
    logger,
    registry,
    tokens: [],
    rateLimitPerMinute: 6000,
    bodyLimitBytes: 1024,
    readiness: {
      catalog: () => pingCatalog(db),
      redis: () => queues.ping(),
    },
  });

  let running: Consumers | undefined;
  let schedules: KeptSchedules | undefined;
  return {
    deps,
    handlers,
    app,
    async start() {
      const found = await clientTools();
      // A move needs tools of a major at least its servers' (client-tools.ts): say what there is.
      logger.info(
        { client_tools: found.map((t) => ({ major: t.major, version: t.version, dir: t.dir })) },
        found.length ? 'client tools found' : 'no pg_dump/pg_restore/psql found: moves will fail',
      );
      await boundHealthChecks(deps);
      schedules = await keepWorkerSchedules(deps);
      running = startWorkers(deps, handlers);
    },
    async stop() {
      schedules?.stop();
      await running?.close();
      await app.close();
      await queues.close();
      await connections.close();
      if (!opts.db) await db.destroy();
    },
  };
}

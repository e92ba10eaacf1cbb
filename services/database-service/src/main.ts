// Starts database-service: config, migrations, listen, graceful shutdown.
import { createCatalogDb, migrateToLatest } from '@tenantdb/catalog';
import { createQueues } from '@tenantdb/jobs';
import { createLogger, createRegistry, installShutdown } from '@tenantdb/observability';
import { createPoolConnections } from '@tenantdb/pool-server';
import { createSecretBox } from '@tenantdb/secrets';
import { buildApp } from './app';
import { loadConfig } from './config';

const config = loadConfig();
const logger = createLogger({ name: 'database-service', level: config.LOG_LEVEL });
const db = createCatalogDb({
  url: config.DATABASE_URL,
  poolSize: config.TENANTDB_CATALOG_POOL_SIZE,
  acquireTimeoutMs: config.TENANTDB_CATALOG_ACQUIRE_TIMEOUT_MS,
  applicationName: 'database-service',
});
await migrateToLatest(db);
const secrets = createSecretBox(config.TENANTDB_ENCRYPTION_KEYS);
const queues = createQueues({
  redisUrl: config.REDIS_URL,
  prefix: config.TENANTDB_QUEUE_PREFIX,
  failFast: true,
});
const connections = createPoolConnections(secrets);
const app = await buildApp({
  config,
  db,
  queues,
  logger,
  registry: createRegistry('database-service'),
  secrets,
  connections,
});

installShutdown(logger, [
  { name: 'http', run: () => app.close() },
  { name: 'queues', run: () => queues.close() },
  { name: 'pool connections', run: () => connections.close() },
  { name: 'catalog', run: () => db.destroy() },
]);

const address = await app.listen({ host: config.DATABASE_SERVICE_HOST, port: config.DATABASE_SERVICE_PORT });
logger.info({ address, docs: `${address}/docs` }, 'database-service listening');

// Starts instance-service: config, migrations (schema "instances"), the HTTP API on 8003, the
// consumers of the `instances` and `callbacks` queues, graceful shutdown.
import { INSTANCE_SERVICE_MIGRATIONS, migrateToLatest } from '@tenantdb/catalog';
import { createLogger, installShutdown } from '@tenantdb/observability';
import { buildApp } from './app';
import { loadConfig } from './config';
import { createDeps } from './context';
import { startConsumer } from './jobs/consumer';

const config = loadConfig();
const logger = createLogger({
  name: 'instance-service',
  level: config.LOG_LEVEL,
  base: { pid: process.pid },
});
const deps = createDeps(config, logger);
await migrateToLatest(deps.db, INSTANCE_SERVICE_MIGRATIONS);
const app = await buildApp(deps);
const consumer = await startConsumer(deps);

installShutdown(
  logger,
  [
    { name: 'http', run: () => app.close() },
    { name: 'consumer', run: () => consumer.close() },
    { name: 'queues', run: () => deps.queues.close() },
    { name: 'catalog', run: () => deps.db.destroy() },
  ],
  config.TENANTDB_SHUTDOWN_DEADLINE_MS,
);

const address = await app.listen({ host: config.INSTANCE_SERVICE_HOST, port: config.INSTANCE_SERVICE_PORT });
logger.info({ address, docs: `${address}/docs` }, 'instance-service listening');

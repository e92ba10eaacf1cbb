// Starts database-service: config, migrations, listen, graceful shutdown.
import { migrateToLatest } from '@tenantdb/catalog';
import { createLogger, installShutdown } from '@tenantdb/observability';
import { createDatabaseService } from './app';
import { loadConfig } from './config';

const config = loadConfig();
const logger = createLogger({ name: 'database-service', level: config.LOG_LEVEL });
const service = await createDatabaseService(config, logger);
await migrateToLatest(service.db);
installShutdown(logger, service.shutdownSteps);

const address = await service.app.listen({
  host: config.DATABASE_SERVICE_HOST,
  port: config.DATABASE_SERVICE_PORT,
});
logger.info({ address, docs: `${address}/docs` }, 'database-service listening');

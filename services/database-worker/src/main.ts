// Starts one database-worker replica: config, migrations, consumers, /metrics on 9464, graceful
// shutdown (stop taking jobs, finish those in hand within the deadline, close connections).
import { createCatalogDb, migrateToLatest } from '@tenantdb/catalog';
import { createLogger, installShutdown } from '@tenantdb/observability';
import { loadConfig } from './config';
import { createWorker } from './worker';

const config = loadConfig();
const logger = createLogger({ name: 'database-worker', level: config.LOG_LEVEL, base: { pid: process.pid } });
const migrator = createCatalogDb({ url: config.DATABASE_URL, poolSize: 1 });
await migrateToLatest(migrator);
await migrator.destroy();

const worker = await createWorker(config, logger);
installShutdown(logger, [{ name: 'worker', run: () => worker.stop() }], config.TENANTDB_SHUTDOWN_DEADLINE_MS);
await worker.start();
const address = await worker.app.listen({
  host: config.DATABASE_WORKER_HOST,
  port: config.DATABASE_WORKER_PORT,
});
logger.info({ address }, 'database-worker running');

// database-service under test, in a process of its own (forked by stack.ts): built with buildApp
// and configured from the environment like main.ts, but it reports its address to the harness
// over IPC and exits when the harness goes away. A separate process keeps the load generator off
// the service's event loop, as in production.
import { createCatalogDb } from '@tenantdb/catalog';
import { buildApp } from '@tenantdb/database-service';
// The same config schema as main.ts, so the bench parses its environment exactly as the service does.
import { loadConfig } from '@tenantdb/database-service/config';
import { createQueues } from '@tenantdb/jobs';
import { createLogger, createRegistry } from '@tenantdb/observability';
import { createPoolConnections } from '@tenantdb/pool-server';
import { createSecretBox } from '@tenantdb/secrets';

export type ServiceMessage = { type: 'listening'; address: string } | { type: 'failed'; message: string };

const send = (message: ServiceMessage) => process.send?.(message);

try {
  const config = loadConfig();
  const logger = createLogger({ name: 'database-service', level: config.LOG_LEVEL });
  const db = createCatalogDb({
    url: config.DATABASE_URL,
    poolSize: config.TENANTDB_CATALOG_POOL_SIZE,
    acquireTimeoutMs: config.TENANTDB_CATALOG_ACQUIRE_TIMEOUT_MS,
    applicationName: 'database-service',
  });
  const queues = createQueues({
    redisUrl: config.REDIS_URL,
    prefix: config.TENANTDB_QUEUE_PREFIX,
    failFast: true,
  });
  const secrets = createSecretBox(config.TENANTDB_ENCRYPTION_KEYS);
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

  let closing = false;
  const close = async () => {
    if (closing) return;
    closing = true;
    // Bounded: a wedged close must not keep the harness waiting for the kill fallback.
    setTimeout(() => process.exit(1), 10_000).unref();
    await app.close().catch(() => {});
    await queues.close().catch(() => {});
    await connections.close().catch(() => {});
    await db.destroy().catch(() => {});
    process.exit(0);
  };
  process.on('message', (m: unknown) => {
    if ((m as { type?: string } | null)?.type === 'shutdown') void close();
  });
  // The harness died or closed the channel: nobody will stop us otherwise.
  process.on('disconnect', () => void close());
  // Ctrl-C reaches the whole process group: close as cleanly as on SIGTERM.
  process.on('SIGTERM', () => void close());
  process.on('SIGINT', () => void close());

  const address = await app.listen({
    host: config.DATABASE_SERVICE_HOST,
    port: config.DATABASE_SERVICE_PORT,
  });
  send({ type: 'listening', address });
} catch (err) {
  send({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
  process.exit(1);
}

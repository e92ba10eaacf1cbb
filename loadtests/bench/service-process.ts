// database-service under test, in a process of its own (forked by stack.ts): built with
// createDatabaseService and configured from the environment like main.ts, but it reports its address to the harness
// over IPC and exits when the harness goes away. A separate process keeps the load generator off
// the service's event loop, as in production.
import { createDatabaseService } from '@tenantdb/database-service';
// The same config schema as main.ts, so the bench parses its environment exactly as the service does.
import { loadConfig } from '@tenantdb/database-service/config';
import { createLogger } from '@tenantdb/observability';

export type ServiceMessage = { type: 'listening'; address: string } | { type: 'failed'; message: string };

const send = (message: ServiceMessage) => process.send?.(message);

try {
  const config = loadConfig();
  const logger = createLogger({ name: 'database-service', level: config.LOG_LEVEL });
  const service = await createDatabaseService(config, logger);

  let closing = false;
  const close = async () => {
    if (closing) return;
    closing = true;
    // Bounded: a wedged close must not keep the harness waiting for the kill fallback.
    setTimeout(() => process.exit(1), 10_000).unref();
    await service.close();
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

  const address = await service.app.listen({
    host: config.DATABASE_SERVICE_HOST,
    port: config.DATABASE_SERVICE_PORT,
  });
  send({ type: 'listening', address });
} catch (err) {
  send({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
  process.exit(1);
}

// buildApp wires instance-service's HTTP API from what it is given and does not listen; main.ts
// starts it (and the job consumer).
import { pingCatalog } from '@tenantdb/catalog';
import { createHttpApp, edgeOptions, type HttpApp } from '@tenantdb/http';
import type { InstanceServiceDeps } from './context';
import { createInstanceAccess } from './instances/access';
import { instanceAccessRoutes } from './instances/access.routes';
import { instancesRoutes } from './instances/instances.routes';
import { createInstancesService } from './instances/instances.service';
import { createInstancePlan } from './instances/plan';
import { createPortalKeyLookup } from './portal-keys';

export { createDeps, type InstanceServiceDeps } from './context';
export { startConsumer } from './jobs/consumer';

export async function buildApp(deps: InstanceServiceDeps): Promise<HttpApp> {
  const { config, db, queues, logger, registry } = deps;
  const app = await createHttpApp({
    name: 'instance-service',
    version: '0.1.0',
    description:
      "The API of the signup portal: instances and their databases. Every route that names an instance takes the customer_id it belongs to; another customer's instance is 404.",
    logger,
    registry,
    tokens: [{ name: 'portal', token: config.TENANTDB_PORTAL_TOKEN, scopes: ['portal'] }],
    tokenLookups: [
      createPortalKeyLookup({
        databaseService: deps.databaseService,
        cacheMs: config.TENANTDB_API_KEY_CACHE_MS,
      }),
    ],
    ...edgeOptions(config, queues),
    bodyLimitBytes: config.TENANTDB_BODY_LIMIT_BYTES,
    readiness: {
      catalog: () => pingCatalog(db),
      redis: () => queues.ping(),
    },
  });
  instancesRoutes(app, createInstancesService(deps));
  instanceAccessRoutes(app, createInstanceAccess(deps), createInstancePlan(deps));
  return app;
}

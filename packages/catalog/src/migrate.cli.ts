// pnpm db:migrate / pnpm db:rollback — DATABASE_URL names the catalog.
import { parseConfig, z } from '@tenantdb/config';
import { createCatalogDb } from './db';
import { migrateDown, migrateToLatest } from './migrate';

const config = parseConfig(z.object({ DATABASE_URL: z.string().min(1) }));
const direction = process.argv[2] ?? 'up';
const db = createCatalogDb({ url: config.DATABASE_URL, poolSize: 1, applicationName: 'tenantdb-migrate' });
try {
  const applied = direction === 'down' ? await migrateDown(db) : await migrateToLatest(db);
  console.log(applied.length ? applied.join('\n') : 'catalog is up to date');
} finally {
  await db.destroy();
}

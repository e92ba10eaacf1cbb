// pnpm db:migrate — every service's migrations; pnpm db:rollback <service> — the newest migration
// of one service. DATABASE_URL names the catalog.
import { parseConfig, z } from '@tenantdb/config';
import { createCatalogDb } from './db';
import { MIGRATION_SETS, migrateDown, migrateToLatest } from './migrate';

const config = parseConfig(z.object({ DATABASE_URL: z.string().min(1) }));
const [direction = 'up', target] = process.argv.slice(2);
const db = createCatalogDb({ url: config.DATABASE_URL, poolSize: 1, applicationName: 'tenantdb-migrate' });
try {
  if (direction === 'down') {
    const set = MIGRATION_SETS.find((s) => s.name === target);
    if (!set) {
      console.error(`usage: pnpm db:rollback <${MIGRATION_SETS.map((s) => s.name).join('|')}>`);
      process.exitCode = 2;
    } else {
      const reverted = await migrateDown(db, set);
      console.log(reverted.length ? reverted.join('\n') : `${set.name}: nothing to revert`);
    }
  } else {
    for (const set of MIGRATION_SETS) {
      const applied = await migrateToLatest(db, set);
      console.log(
        applied.length ? applied.map((a) => `${set.name}: ${a}`).join('\n') : `${set.name}: up to date`,
      );
    }
  }
} finally {
  await db.destroy();
}

// instance-service's migrations live in their own schema and go down and up again cleanly,
// without touching database-service's schema.
import {
  createCatalogDb,
  INSTANCE_SERVICE_MIGRATIONS,
  migrateDown,
  migrateToLatest,
} from '@tenantdb/catalog';
import { cloneCatalog } from '@tenantdb/testkit';
import { sql } from 'kysely';
import { expect, inject, it } from 'vitest';

it('instances and audit_events in schema "instances": down to nothing and up again', async () => {
  const catalog = await cloneCatalog(inject('catalogAdminUrl'), inject('catalogTemplate'));
  const db = createCatalogDb({ url: catalog.url, poolSize: 2 });
  const tables = async (schema: string) =>
    (
      await sql<{ table_name: string }>`SELECT table_name FROM information_schema.tables
        WHERE table_schema = ${schema} AND table_name NOT LIKE 'kysely%' ORDER BY table_name`.execute(db)
    ).rows.map((r) => r.table_name);
  try {
    expect(await tables('instances')).toEqual(['audit_events', 'instances']);
    const databaseService = await tables('database_service');
    expect(databaseService).toContain('tenant_databases');

    expect(await migrateDown(db, INSTANCE_SERVICE_MIGRATIONS)).toEqual([
      'Down 0003_idempotency_per_customer',
    ]);
    expect(await migrateDown(db, INSTANCE_SERVICE_MIGRATIONS)).toEqual(['Down 0002_audit_events']);
    expect(await migrateDown(db, INSTANCE_SERVICE_MIGRATIONS)).toEqual(['Down 0001_instances']);
    expect(await tables('instances')).toEqual([]);
    expect(await tables('database_service')).toEqual(databaseService);

    expect(await migrateToLatest(db, INSTANCE_SERVICE_MIGRATIONS)).toEqual([
      'Up 0001_instances',
      'Up 0002_audit_events',
      'Up 0003_idempotency_per_customer',
    ]);
    expect(await tables('instances')).toEqual(['audit_events', 'instances']);
    // The pool's connections were handed back with their own search_path.
    const { rows } = await sql<{ search_path: string }>`SHOW search_path`.execute(db);
    expect(rows[0]!.search_path).toBe('database_service');
  } finally {
    await db.destroy();
    await catalog.drop();
  }
});

import { migrations } from '@tenantdb/migrations/database-service';
import { type Kysely, sql } from 'kysely';
import { type MigrationResultSet, Migrator } from 'kysely/migration';
import { CATALOG_SCHEMA } from './db';

function migrator<DB>(db: Kysely<DB>, schema: string): Migrator {
  return new Migrator({
    db: db as unknown as Kysely<unknown>,
    provider: { getMigrations: async () => migrations },
    migrationTableSchema: schema,
  });
}

function unwrap(result: MigrationResultSet): string[] {
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error');
    throw new Error(`migration ${failed?.migrationName ?? '(unknown)'} failed: ${String(result.error)}`, {
      cause: result.error,
    });
  }
  return (result.results ?? []).map((r) => `${r.direction} ${r.migrationName}`);
}

/** Brings the catalog schema to the newest migration. Safe to run from several processes at once. */
export async function migrateToLatest<DB>(db: Kysely<DB>, schema = CATALOG_SCHEMA): Promise<string[]> {
  await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(schema)}`.execute(db);
  return unwrap(await migrator(db, schema).migrateToLatest());
}

/** Reverts the newest migration (operators: one step at a time). */
export async function migrateDown<DB>(db: Kysely<DB>, schema = CATALOG_SCHEMA): Promise<string[]> {
  return unwrap(await migrator(db, schema).migrateDown());
}

// The migration runner. Each service owns one migration set in its own schema of the catalog
// Postgres: database-service (schema database_service) and instance-service (schema instances).
import { migrations as databaseServiceMigrations } from '@tenantdb/migrations/database-service';
import { migrations as instanceServiceMigrations } from '@tenantdb/migrations/instance-service';
import { type Kysely, sql } from 'kysely';
import { type Migration, type MigrationResultSet, Migrator } from 'kysely/migration';
import { CATALOG_SCHEMA } from './db';

export interface MigrationSet {
  /** The owning service, as operators name it (`pnpm db:rollback instance-service`). */
  name: string;
  /** Its schema: tables, and kysely's own bookkeeping tables, live there. */
  schema: string;
  migrations: Record<string, Migration>;
}

export const DATABASE_SERVICE_MIGRATIONS: MigrationSet = {
  name: 'database-service',
  schema: CATALOG_SCHEMA,
  migrations: databaseServiceMigrations,
};

export const INSTANCE_SERVICE_SCHEMA = 'instances';
export const INSTANCE_SERVICE_MIGRATIONS: MigrationSet = {
  name: 'instance-service',
  schema: INSTANCE_SERVICE_SCHEMA,
  migrations: instanceServiceMigrations,
};

/** Every set, in the order `pnpm db:migrate` and the test setup apply them. */
export const MIGRATION_SETS: readonly MigrationSet[] = [
  DATABASE_SERVICE_MIGRATIONS,
  INSTANCE_SERVICE_MIGRATIONS,
];

function unwrap(result: MigrationResultSet): string[] {
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error');
    throw new Error(`migration ${failed?.migrationName ?? '(unknown)'} failed: ${String(result.error)}`, {
      cause: result.error,
    });
  }
  return (result.results ?? []).map((r) => `${r.direction} ${r.migrationName}`);
}

/**
 * Runs the migrator on one connection whose search_path is the set's schema, so the unqualified
 * DDL of the migrations lands there whatever schema the given pool's connections use.
 */
async function run<DB>(
  db: Kysely<DB>,
  set: MigrationSet,
  step: (migrator: Migrator) => Promise<MigrationResultSet>,
): Promise<string[]> {
  await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(set.schema)}`.execute(db);
  return db.connection().execute(async (conn) => {
    await sql`SELECT set_config('search_path', ${set.schema}, false)`.execute(conn);
    try {
      const migrator = new Migrator({
        db: conn as unknown as Kysely<unknown>,
        provider: { getMigrations: async () => set.migrations },
        migrationTableSchema: set.schema,
      });
      return unwrap(await step(migrator));
    } finally {
      // Back to the connection's own default before it returns to the pool.
      await sql`RESET search_path`.execute(conn);
    }
  });
}

/** Brings a set to its newest migration. Safe to run from several processes at once. */
export function migrateToLatest<DB>(
  db: Kysely<DB>,
  set: MigrationSet = DATABASE_SERVICE_MIGRATIONS,
): Promise<string[]> {
  return run(db, set, (m) => m.migrateToLatest());
}

/** Reverts the newest migration of a set (operators: one step at a time). */
export function migrateDown<DB>(
  db: Kysely<DB>,
  set: MigrationSet = DATABASE_SERVICE_MIGRATIONS,
): Promise<string[]> {
  return run(db, set, (m) => m.migrateDown());
}

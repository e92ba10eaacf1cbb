// Catalog databases for tests: migrate once into a template, clone one database per test file.
import { randomBytes } from 'node:crypto';
import { createCatalogDb, MIGRATION_SETS, migrateToLatest } from '@tenantdb/catalog';
import pg from 'pg';

/** Creates `template` on the server at adminUrl and migrates every service's schema to the newest. */
export async function prepareCatalogTemplate(adminUrl: string, template: string): Promise<void> {
  await adminQuery(adminUrl, `DROP DATABASE IF EXISTS "${template}" WITH (FORCE)`);
  await adminQuery(adminUrl, `CREATE DATABASE "${template}"`);
  const db = createCatalogDb({ url: withDatabase(adminUrl, template), poolSize: 1 });
  try {
    for (const set of MIGRATION_SETS) await migrateToLatest(db, set);
  } finally {
    await db.destroy();
  }
}

export interface TestCatalog {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** A fresh catalog database cloned from the migrated template. */
export async function cloneCatalog(adminUrl: string, template: string): Promise<TestCatalog> {
  const name = `tenantdb_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(adminUrl, `CREATE DATABASE "${name}" TEMPLATE "${template}"`);
  return {
    url: withDatabase(adminUrl, name),
    name,
    drop: async () => {
      await adminQuery(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

export async function adminQuery(url: string, text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}

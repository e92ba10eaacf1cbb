import { Kysely, PostgresDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import type { CatalogDatabase } from './types';

/** database-service's schema in the shared catalog Postgres (instance-service has its own). */
export const CATALOG_SCHEMA = 'database_service';

export type CatalogDb = Kysely<CatalogDatabase>;
export type CatalogTrx = Transaction<CatalogDatabase>;
/** What a repository method runs on: the pool, or the caller's transaction. */
export type Executor = CatalogDb | CatalogTrx;

// bigint (count(*), identity ids) as number: counts here never approach 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number.parseInt(v, 10));

export interface DbOptions {
  url: string;
  poolSize?: number;
  applicationName?: string;
  /** The service's schema: every connection's search_path. */
  schema?: string;
  /** How long a query may wait for a free pool connection (or a new one) before it fails. */
  acquireTimeoutMs?: number;
}

/** database-service's catalog (schema database_service). */
export function createCatalogDb(opts: DbOptions): CatalogDb {
  return createDb<CatalogDatabase>({ ...opts, schema: opts.schema ?? CATALOG_SCHEMA });
}

/**
 * A kysely pool on the catalog Postgres whose connections see one service's schema; each service
 * passes its own `Database` interface (instance-service: schema "instances").
 */
export function createDb<DB>(opts: DbOptions & { schema: string }): Kysely<DB> {
  const schema = opts.schema;
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize ?? 10,
    application_name: opts.applicationName ?? 'tenantdb',
    options: `-c search_path=${schema}`,
    // Bounds both the wait for a free client under a burst and a connect to an unreachable
    // catalog: fail (the API answers 503) rather than queue forever.
    connectionTimeoutMillis: opts.acquireTimeoutMs ?? 15_000,
  });
  // A client losing its connection (catalog restart) must not crash the process. pg.Pool listens
  // on idle clients only ('error' below); a checked-out client between queries (a transaction's
  // or a session's, as a held advisory lock) emits on itself, and an unheard 'error' event kills
  // the process. Its next query fails and the pool discards it on release.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
}

/** A round trip to the catalog (readiness): throws when it cannot be reached. */
export async function ping(db: CatalogDb): Promise<void> {
  await sql`SELECT 1`.execute(db);
}

// EXPLAIN (ANALYZE, BUFFERS) of the catalog's hot statements, exactly as the service sends them:
// each is built by calling the catalog repository itself on a kysely instance whose driver only
// records what it is given (kysely's DummyDriver), then run on the real catalog inside a
// transaction that is rolled back, so a write (the reservation) leaves nothing behind.
import { randomUUID } from 'node:crypto';
import {
  type CatalogDatabase,
  type CatalogDb,
  createReservationsRepo,
  createServersRepo,
  createTenantDatabasesRepo,
  customerCountStatement,
  driftedServers,
  warmReady,
} from '@tenantdb/catalog';
import { generateTenantNames } from '@tenantdb/pool-server';
import {
  type CompiledQuery,
  DummyDriver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
} from 'kysely';
import type pg from 'pg';

export interface HotStatement {
  name: string;
  /** The repository call and what it serves, for the report. */
  source: string;
  query: CompiledQuery;
}

/** Runs `call` against a recording catalog and returns every statement it would have sent. */
export async function recordStatements(call: (db: CatalogDb) => Promise<unknown>): Promise<CompiledQuery[]> {
  const recorded: CompiledQuery[] = [];
  const db = new Kysely<CatalogDatabase>({
    dialect: {
      createAdapter: () => new PostgresAdapter(),
      createDriver: () => new DummyDriver(),
      createIntrospector: (k) => new PostgresIntrospector(k),
      createQueryCompiler: () => new PostgresQueryCompiler(),
    },
    log: (event) => {
      recorded.push(event.query);
    },
  });
  try {
    await call(db);
  } catch {
    // The driver answers every statement with no rows, which some callers refuse (a count that
    // must return one); what they sent is recorded all the same. Let any sibling statement of a
    // Promise.all finish recording too.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    await db.destroy();
  }
  if (recorded.length === 0) throw new Error('the call sent no statement');
  return recorded;
}

async function one(name: string, source: string, call: (db: CatalogDb) => Promise<unknown>) {
  const queries = await recordStatements(call);
  return queries.map((query, i) => ({
    name: queries.length > 1 ? `${name} (${i + 1}/${queries.length})` : name,
    source,
    query,
  }));
}

/** What reserveShared is given for a new instance (plan "standard"), as an allocation would. */
export function freshReservation(passwordEnc: string, requestId: string) {
  const names = generateTenantNames();
  return {
    id: randomUUID(),
    instance_id: randomUUID(),
    customer_id: randomUUID(),
    plan_tier: 'standard',
    connection_limit: 20,
    password_enc: passwordEnc,
    db_name: names.dbName,
    db_user: names.dbUser,
    actor: 'scale-bench',
    request_id: requestId,
  };
}

/**
 * The statements behind allocate (the reservation, the idempotency look-up), GET /admin/stats,
 * GET /admin/pools' first page, with parameters an allocation of a fresh instance would carry, and
 * the two catalog reads every scrape of every worker replica makes.
 */
export async function hotStatements(passwordEnc: string): Promise<HotStatement[]> {
  const request = freshReservation(passwordEnc, 'explain');
  return [
    ...(await one(
      'reserveShared, skip locked (pack)',
      'ReservationsRepo.reserveShared — POST /allocate, first try of every new allocation',
      (db) => createReservationsRepo(db).reserveShared(request, { strategy: 'pack', skipLocked: true }),
    )),
    ...(await one(
      "a customer's instances and dedicated servers",
      'LimitsRepo.lockCustomer — POST /allocate, every reservation try, under the customer lock',
      (db) => customerCountStatement(randomUUID(), randomUUID()).execute(db),
    )),
    ...(await one(
      'findLiveByInstance',
      'TenantDatabasesRepo.findLiveByInstance — POST /allocate (idempotency), DELETE, rotate',
      (db) => createTenantDatabasesRepo(db).findLiveByInstance(randomUUID()),
    )),
    ...(await one('servers.stats', 'ServersRepo.stats — GET /admin/stats', (db) =>
      createServersRepo(db).stats(),
    )),
    ...(await one(
      'servers.list, first page',
      'ServersRepo.list — GET /admin/pools (limit 100, offset 0)',
      (db) => createServersRepo(db).list({ limit: 100, offset: 0 }),
    )),
    ...(await one(
      'catalog drift',
      'tenantdb_catalog_drift — GET /metrics of every database-worker replica',
      (db) => driftedServers.execute(db),
    )),
    ...(await one(
      'warm databases',
      'tenantdb_warm_databases — GET /metrics of every database-worker replica',
      (db) => warmReady.execute(db),
    )),
  ];
}

export interface ExplainedStatement extends HotStatement {
  plan: string;
  executionMs: number;
}

/** EXPLAIN (ANALYZE, BUFFERS) of each statement in its own rolled-back transaction. */
export async function explainAll(
  catalog: pg.Client,
  statements: HotStatement[],
): Promise<ExplainedStatement[]> {
  const out: ExplainedStatement[] = [];
  for (const s of statements) {
    await catalog.query('BEGIN');
    try {
      const { rows } = await catalog.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN (ANALYZE, BUFFERS) ${s.query.sql}`,
        [...s.query.parameters],
      );
      const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
      const ms = plan.match(/Execution Time: ([\d.]+) ms/);
      out.push({ ...s, plan, executionMs: ms ? Number(ms[1]) : Number.NaN });
    } finally {
      await catalog.query('ROLLBACK');
    }
  }
  return out;
}

/** Plan lines that usually mean work grows with the fleet: sequential scans and sorts. */
export function scanLines(plan: string): string[] {
  return plan
    .split('\n')
    .filter((l) => /Seq Scan|Sort Method|Sort Key|Bitmap Heap Scan|rows=\d{4,}/.test(l))
    .map((l) => l.trim());
}

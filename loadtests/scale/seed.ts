// Seeds the catalog with a simulated fleet in a few set-based statements (generate_series, never
// row by row): `servers` db_servers rows named sim-<k> and `rows` tenant_databases rows spread
// evenly over them, in the states a fleet that has run for a while is in. Every simulated server
// points at one of a handful of real pool servers (address and admin credentials copied from their
// catalog rows), so an allocation placed on one really creates a database.
import type { SecretBox } from '@tenantdb/secrets';
import type pg from 'pg';

export interface FleetSize {
  servers: number;
  rows: number;
}

/** Prefix of every simulated server's name (db_servers.name) and tenant database's db_name. */
export const SIM_SERVER_PREFIX = 'sim-';
const SIM_DB_PREFIX = 'tdb_sim';

/**
 * Server status by k % 20 (k = 1…servers): half active, a quarter full, one slot each cordoned,
 * error, decommissioned, draining and provisioning. The order is chosen so that the first ten
 * (the small catalog) are 5 active, 3 full, 1 cordoned, 1 error.
 */
export const STATUS_SLOTS = [
  'active',
  'active',
  'full',
  'active',
  'active',
  'full',
  'cordoned',
  'active',
  'full',
  'error',
  'active',
  'active',
  'full',
  'active',
  'decommissioned',
  'active',
  'full',
  'draining',
  'active',
  'provisioning',
] as const;

/** Rows per server are fixed by the sizes; the live counts below need at least this many. */
export const MIN_ROWS_PER_SERVER = 45;

export function checkSize(size: FleetSize): void {
  if (!Number.isInteger(size.servers) || !Number.isInteger(size.rows) || size.servers < 1)
    throw new Error(`bad fleet size ${JSON.stringify(size)}`);
  if (Math.floor(size.rows / size.servers) < MIN_ROWS_PER_SERVER)
    throw new Error(
      `${size.rows} rows over ${size.servers} servers is under ${MIN_ROWS_PER_SERVER} per server: ` +
        'the seeded live counts would not fit',
    );
}

/**
 * The per-server plan as SQL over k (1…$1): status, type, live (slot-holding) rows, capacity.
 * - dedicated: k % 50 = 25 (2 %), one live tenant, full at max_instances 1;
 * - manual allocation_strategy: k % 200 = 100; priority 200 on every tenth server, else 100;
 * - live rows: full 40 (= max_instances), cordoned 35, draining 20, error 10, active 10–40 with
 *   100–200 free slots; decommissioned and provisioning servers hold none;
 * - health: error → unhealthy (3 failures), every 97th active/full server degraded, provisioning
 *   unknown, the rest healthy.
 */
const PLAN_SQL = `
  SELECT k, gen_random_uuid() AS id, st.status, ty.server_type, lv.live,
         CASE WHEN ty.server_type = 'dedicated' THEN 1
              WHEN st.status = 'full' THEN lv.live
              WHEN st.status = 'active' THEN lv.live + 100 + (k * 13) % 101
              ELSE 100 END AS max_instances
    FROM generate_series(1, $1::int) AS k
   CROSS JOIN LATERAL (SELECT CASE WHEN k % 50 = 25 THEN 'dedicated' ELSE 'shared' END AS server_type) ty
   CROSS JOIN LATERAL (
     SELECT CASE WHEN ty.server_type = 'dedicated' THEN 'full'
                 ELSE ($2::text[])[k % 20 + 1] END AS status) st
   CROSS JOIN LATERAL (
     SELECT CASE WHEN ty.server_type = 'dedicated' THEN 1
                 WHEN st.status = 'full' THEN 40
                 WHEN st.status = 'cordoned' THEN 35
                 WHEN st.status = 'draining' THEN 20
                 WHEN st.status = 'error' THEN 10
                 WHEN st.status = 'active' THEN 10 + (k * 7) % 31
                 ELSE 0 END AS live) lv`;

const SERVERS_SQL = `
  INSERT INTO db_servers
         (id, name, driver, host, port, orchestrator_ref, postgres_version, server_type,
          allocation_strategy, priority, dedicated_to_customer_id, dedicated_to_instance_id,
          max_instances, current_instances, status, status_reason, health_status, health_failures,
          last_health_check, last_health_latency_ms, admin_user, admin_password_enc, admin_database,
          created_at, updated_at, provisioned_at, last_allocated_at, deleted_at)
  SELECT p.id, '${SIM_SERVER_PREFIX}' || p.k, 'external', r.host, r.port, NULL, r.postgres_version, p.server_type,
         CASE WHEN p.k % 200 = 100 THEN 'manual' ELSE 'auto' END,
         CASE WHEN p.k % 10 = 0 THEN 200 ELSE 100 END,
         CASE WHEN p.server_type = 'dedicated' THEN md5('sim-customer-' || p.k)::uuid END,
         CASE WHEN p.server_type = 'dedicated' THEN md5('sim-instance-' || p.k)::uuid END,
         p.max_instances, p.live, p.status,
         CASE WHEN p.status IN ('cordoned', 'draining', 'error', 'decommissioned') THEN 'seeded' END,
         CASE WHEN p.status = 'error' THEN 'unhealthy'
              WHEN p.status IN ('provisioning', 'decommissioned') THEN 'unknown'
              WHEN p.k % 97 = 0 THEN 'degraded'
              ELSE 'healthy' END,
         CASE WHEN p.status = 'error' THEN 3 WHEN p.k % 97 = 0 THEN 1 ELSE 0 END,
         CASE WHEN p.status NOT IN ('provisioning', 'decommissioned')
              THEN now() - (p.k % 300) * interval '1 second' END,
         CASE WHEN p.status NOT IN ('provisioning', 'decommissioned') THEN 2 + p.k % 9 END,
         r.admin_user, r.admin_password_enc, r.admin_database,
         now() - (p.k % 400) * interval '1 day', now() - (p.k % 300) * interval '1 second',
         CASE WHEN p.status <> 'provisioning' THEN now() - (p.k % 400) * interval '1 day' END,
         CASE WHEN p.live > 0 THEN now() - (p.k % 3600) * interval '1 second' END,
         CASE WHEN p.status = 'decommissioned' THEN now() - (p.k % 30) * interval '1 day' END
    FROM pg_temp.sim_plan p
    JOIN db_servers r ON r.id = ($1::uuid[])[p.k % cardinality($1::uuid[]) + 1]`;

/**
 * Row j (1…rows) goes to server k = (j-1) % servers + 1 as its m-th row (m = (j-1) / servers).
 * m < live: slot-holding — ready, except the last one on every tenth server creating (k % 10 = 3)
 * or releasing (k % 10 = 7). Past that: history (one in five failed, the rest released); the last
 * three rows of a server that would keep warm databases are warm: claimable (ready_at set) on
 * full and cordoned pools, still being made (ready_at NULL) on active ones — the seeded rows
 * have no real database behind them, so none on a placeable pool may be claimed. Dedicated
 * servers hold their one tenant and nothing warm.
 */
const ROWS_SQL = `
  INSERT INTO tenant_databases
         (instance_id, customer_id, db_server_id, db_name, db_user, password_enc, plan_tier, status,
          status_reason, connection_limit, created_at, updated_at, ready_at, released_at)
  SELECT CASE WHEN x.status <> 'warm' THEN md5('sim-instance-' || x.iid)::uuid END,
         CASE WHEN x.status <> 'warm' THEN md5('sim-customer-' || x.cid)::uuid END,
         x.server_id, '${SIM_DB_PREFIX}' || x.j, '${SIM_DB_PREFIX}' || x.j || '_u', $3::text,
         pl.plan_tier, x.status,
         CASE WHEN x.status = 'failed' THEN 'seeded: creation failed' END,
         pl.connection_limit,
         -- rows in creating / releasing are in flight, not stuck: reconcile leaves them to their request
         x.created_at, CASE WHEN x.status IN ('creating', 'releasing') THEN now() ELSE x.created_at END,
         CASE WHEN x.status IN ('ready', 'releasing', 'released')
                OR (x.status = 'warm' AND x.server_status IN ('full', 'cordoned'))
              THEN x.created_at + interval '1 second' END,
         CASE WHEN x.status = 'released' THEN x.created_at + interval '30 days' END
    FROM (
      SELECT j, s.k, s.id AS server_id, s.status AS server_status, s.server_type,
             -- the dedicated server's one tenant is the instance it is dedicated to
             CASE WHEN s.server_type = 'dedicated' AND m = 0 THEN s.k ELSE j END AS iid,
             CASE WHEN s.server_type = 'dedicated' AND m = 0 THEN s.k ELSE j % ($1::int * 20) END AS cid,
             now() - (j % 8760) * interval '1 hour' AS created_at,
             CASE WHEN m < s.live THEN
                    CASE WHEN m = s.live - 1 AND s.k % 10 = 3 THEN 'creating'
                         WHEN m = s.live - 1 AND s.k % 10 = 7 THEN 'releasing'
                         ELSE 'ready' END
                  WHEN m >= per_server - 3 AND s.server_type = 'shared'
                       AND s.status IN ('active', 'full', 'cordoned') THEN 'warm'
                  WHEN m % 5 = 0 THEN 'failed'
                  ELSE 'released' END AS status
        FROM generate_series(1, $2::int) AS j
       CROSS JOIN LATERAL (SELECT (j - 1) / $1::int AS m, $2::int / $1::int AS per_server) g
        JOIN pg_temp.sim_plan s ON s.k = (j - 1) % $1::int + 1
    ) x
    JOIN plans pl ON pl.plan_tier = CASE WHEN x.server_type = 'dedicated' THEN 'premium'
                                        ELSE (ARRAY['free', 'starter', 'standard', 'standard', 'professional'])[x.j % 5 + 1] END`;

export interface SeedOptions {
  size: FleetSize;
  /** Catalog ids of the real pool servers the simulated ones point at. */
  realServerIds: string[];
  /** A ciphertext (the service's keys) stored as every seeded row's password. */
  passwordEnc: string;
  /**
   * The service's keys: each simulated server then gets the admin password of the real pool it
   * points at encrypted for its own row (ciphertexts are bound to their row's id, so a copied one
   * would not decrypt). Without it they keep the copied ciphertext.
   */
  secrets?: Pick<SecretBox, 'encrypt' | 'decrypt'>;
}

/**
 * Seeds the fleet in one transaction on `catalog` (search_path at the catalog schema): every server
 * already in the catalog (the real pools) is cordoned first, so only simulated servers take
 * allocations. Then the upkeep a catalog that has run for a while has had: VACUUM (FREEZE,
 * ANALYZE), so the planner sees the fleet as a service that has run with it would, and CHECKPOINT,
 * so the load's pages are on disk. Without them the first measurement after a large seed shares
 * the machine with autovacuum's first pass over every new row and with the checkpoint writing
 * them out: costs of the bulk load, not of the catalog's size.
 */
/** Re-encrypts the admin password each simulated server copied from a real pool for its own row. */
async function rebindAdminPasswords(
  catalog: pg.Client,
  secrets: Pick<SecretBox, 'encrypt' | 'decrypt'>,
  realServerIds: string[],
): Promise<void> {
  const { rows: real } = await catalog.query<{ id: string; admin_password_enc: string }>(
    'SELECT id, admin_password_enc FROM db_servers WHERE id = ANY($1::uuid[]) AND admin_password_enc IS NOT NULL',
    [realServerIds],
  );
  for (const r of real) {
    const password = secrets.decrypt(r.admin_password_enc, r.id);
    const { rows: copies } = await catalog.query<{ id: string }>(
      'SELECT id FROM db_servers WHERE admin_password_enc = $1 AND id <> $2',
      [r.admin_password_enc, r.id],
    );
    const ids = copies.map((c) => c.id);
    await catalog.query(
      `UPDATE db_servers s SET admin_password_enc = u.enc
         FROM unnest($1::uuid[], $2::text[]) AS u(id, enc) WHERE s.id = u.id`,
      [ids, ids.map((id) => secrets.encrypt(password, id))],
    );
  }
}

export async function seedFleet(catalog: pg.Client, opts: SeedOptions): Promise<void> {
  checkSize(opts.size);
  if (opts.realServerIds.length === 0) throw new Error('no real pool servers to point at');
  await catalog.query('BEGIN');
  try {
    await catalog.query(
      `UPDATE db_servers SET status = 'cordoned', status_reason = 'scale bench: simulated servers take the load'
        WHERE status IN ('active', 'full')`,
    );
    await catalog.query(`CREATE TEMP TABLE sim_plan ON COMMIT DROP AS ${PLAN_SQL}`, [
      opts.size.servers,
      [...STATUS_SLOTS],
    ]);
    await catalog.query(SERVERS_SQL, [opts.realServerIds]);
    if (opts.secrets) await rebindAdminPasswords(catalog, opts.secrets, opts.realServerIds);
    await catalog.query(ROWS_SQL, [opts.size.servers, opts.size.rows, opts.passwordEnc]);
    await catalog.query('COMMIT');
  } catch (err) {
    await catalog.query('ROLLBACK').catch(() => {});
    throw err;
  }
  await catalog.query('VACUUM (FREEZE, ANALYZE) db_servers, tenant_databases');
  await catalog.query('CHECKPOINT');
}

/**
 * Removes every simulated server and every tenant row, with its moves, backups and restores (the
 * real pools hold none: they are cordoned while the fleet is seeded), leaving plans, the real pools
 * and the audit trail.
 */
export async function clearFleet(catalog: pg.Client): Promise<void> {
  await catalog.query('BEGIN');
  try {
    await catalog.query('TRUNCATE tenant_restores, backups, tenant_moves, tenant_databases');
    await catalog.query(`DELETE FROM db_servers WHERE name LIKE '${SIM_SERVER_PREFIX}%'`);
    await catalog.query('COMMIT');
  } catch (err) {
    await catalog.query('ROLLBACK').catch(() => {});
    throw err;
  }
  await catalog.query('VACUUM ANALYZE db_servers');
}

export interface FleetCensus {
  servers: Record<string, number>;
  rows: Record<string, number>;
  placeable: number;
  freeSlots: number;
  /** On disk, with indexes and TOAST: what the catalog Postgres must cache to serve from memory. */
  bytes: { db_servers: number; tenant_databases: number };
}

/** What was seeded, counted back from the catalog (for the report and the test). */
export async function fleetCensus(catalog: pg.Client): Promise<FleetCensus> {
  const servers = await catalog.query<{ status: string; n: number }>(
    `SELECT status, count(*)::int AS n FROM db_servers WHERE name LIKE '${SIM_SERVER_PREFIX}%' GROUP BY status ORDER BY status`,
  );
  const rows = await catalog.query<{ status: string; n: number }>(
    'SELECT status, count(*)::int AS n FROM tenant_databases GROUP BY status ORDER BY status',
  );
  const room = await catalog.query<{ placeable: number; free: number }>(
    `SELECT count(*)::int AS placeable, coalesce(sum(max_instances - current_instances), 0)::int AS free
       FROM db_servers
      WHERE status = 'active' AND server_type = 'shared' AND allocation_strategy = 'auto'
        AND health_status IN ('healthy', 'unknown') AND current_instances < max_instances`,
  );
  const size = await catalog.query<{ db_servers: string; tenant_databases: string }>(
    `SELECT pg_total_relation_size('db_servers') AS db_servers,
            pg_total_relation_size('tenant_databases') AS tenant_databases`,
  );
  return {
    bytes: {
      db_servers: Number(size.rows[0]!.db_servers),
      tenant_databases: Number(size.rows[0]!.tenant_databases),
    },
    servers: Object.fromEntries(servers.rows.map((r) => [r.status, r.n])),
    rows: Object.fromEntries(rows.rows.map((r) => [r.status, r.n])),
    placeable: room.rows[0]!.placeable,
    freeSlots: room.rows[0]!.free,
  };
}

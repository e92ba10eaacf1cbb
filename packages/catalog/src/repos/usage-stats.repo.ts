// Fleet-wide and per-server usage figures from the latest samples: what the worker's gauges and
// the admin API's server usage read. Reads only.
import { sql } from 'kysely';
import type { CatalogDb, Executor } from '../db';

export type UsageStatsRepo = ReturnType<typeof createUsageStatsRepo>;

export function createUsageStatsRepo(db: CatalogDb) {
  return {
    /**
     * What the worker's gauges read on every scrape: ready tenants by quota state and suspended,
     * sampled bytes against storage per server type and per server (servers with a known storage
     * size only), and the age of the oldest sample (a ready tenant never sampled counts from its
     * ready time).
     */
    async figures(trx: Executor = db) {
      const [states, servers, lag] = await Promise.all([
        trx
          .selectFrom('tenant_databases')
          .select((eb) => [
            'quota_state',
            eb.fn.countAll<number>().as('n'),
            eb.fn.count<number>('suspended_at').as('suspended'),
          ])
          .where('status', '=', 'ready')
          .groupBy('quota_state')
          .execute(),
        sql<{ name: string; server_type: string; used: number; storage: number | null }>`
          SELECT s.name, s.server_type, coalesce(u.used, 0)::bigint AS used,
                 s.storage_size_gb::bigint * 1073741824 AS storage
            FROM db_servers s
            LEFT JOIN (SELECT db_server_id, sum(size_bytes) AS used FROM tenant_databases
                        WHERE status = 'ready' GROUP BY db_server_id) u ON u.db_server_id = s.id
           WHERE s.status IN ('active', 'full', 'cordoned', 'draining', 'maintenance')`.execute(trx),
        sql<{ lag: number | null }>`
          SELECT extract(epoch FROM now() - min(coalesce(usage_sampled_at, ready_at, created_at)))::float8 AS lag
            FROM tenant_databases WHERE status = 'ready'`.execute(trx),
      ]);
      return {
        states: states.map((r) => ({ state: r.quota_state, n: Number(r.n), suspended: Number(r.suspended) })),
        servers: servers.rows.map((r) => ({
          ...r,
          used: Number(r.used),
          storage: r.storage === null ? null : Number(r.storage),
        })),
        lagSeconds: lag.rows[0]?.lag ?? null,
      };
    },

    /** The largest ready tenants of a server by their latest sample. */
    largestOnServer(serverId: string, limit: number, trx: Executor = db) {
      return trx
        .selectFrom('tenant_databases')
        .select([
          'id',
          'instance_id',
          'db_name',
          'plan_tier',
          'size_bytes',
          'active_connections',
          'usage_sampled_at',
          'quota_state',
          'suspended_at',
        ])
        .where('db_server_id', '=', serverId)
        .where('status', '=', 'ready')
        .where('size_bytes', 'is not', null)
        .orderBy('size_bytes', 'desc')
        .limit(limit)
        .execute();
    },

    /** A server's sampled total, how many tenants it covers, and the oldest sample among them. */
    async serverTotal(serverId: string, trx: Executor = db) {
      const row = await trx
        .selectFrom('tenant_databases')
        .select((eb) => [
          sql<number>`coalesce(sum(size_bytes), 0)::bigint`.as('total_bytes'),
          eb.fn.countAll<number>().as('tenants'),
          eb.fn.count<number>('usage_sampled_at').as('sampled'),
          eb.fn.min('usage_sampled_at').as('oldest_sample'),
        ])
        .where('db_server_id', '=', serverId)
        .where('status', '=', 'ready')
        .executeTakeFirstOrThrow();
      return {
        total_bytes: Number(row.total_bytes),
        tenants: Number(row.tenants),
        sampled: Number(row.sampled),
        oldest_sample: row.oldest_sample as Date | null,
      };
    },
  };
}

// grow-shared-capacity, the capacity planner: keep free shared slots (counting pools that are
// still starting) at or above the headroom plus the instances allocation turned away for want of
// room that still have no database (unmet demand, @tenantdb/jobs), and never below one, so demand
// finds room before it arrives and a burst is met by as many pools at once as it needs (up to
// TENANTDB_MAX_PENDING_POOLS) rather than one after another. Runs on a schedule and on every
// allocation miss; single flight by job id, and the decision is taken under a
// transaction-scoped advisory lock in case two ever overlap.
import { randomBytes } from 'node:crypto';
import { recentUnmetDemand } from '@tenantdb/jobs';
import { sql } from 'kysely';
import type { JobContext, WorkerDeps } from '../context';

const PLANNER_LOCK = 'tenantdb:grow-shared-capacity';

export function growSharedCapacity(deps: WorkerDeps) {
  const { db, queues, audit, config } = deps;

  return async (payload: { reason?: string }, { log }: JobContext) => {
    // Redis away: plan on the headroom alone.
    const askers = await recentUnmetDemand(queues).catch(() => [] as string[]);
    const created = await db.transaction().execute(async (trx) => {
      await sql`SELECT pg_advisory_xact_lock(hashtext(${PLANNER_LOCK}))`.execute(trx);
      // Turned away, and still without a database (a live row is one they got since).
      const unmet = askers.length
        ? Number(
            (
              await sql<{ n: number }>`
                SELECT count(*)::int AS n FROM unnest(${askers}::uuid[]) AS w(instance_id)
                 WHERE NOT EXISTS (SELECT 1 FROM tenant_databases t
                                    WHERE t.instance_id = w.instance_id AND t.status IN ('creating', 'ready'))`.execute(
                trx,
              )
            ).rows[0]!.n,
          )
        : 0;
      const { rows } = await sql<{ free: number; pending: number; pending_pools: number }>`
        SELECT coalesce(sum(max_instances - current_instances) FILTER (
                 WHERE status = 'active' AND health_status IN ('healthy', 'unknown')), 0)::int AS free,
               coalesce(sum(max_instances) FILTER (WHERE status IN ('provisioning', 'initializing')), 0)::int AS pending,
               count(*) FILTER (WHERE status IN ('provisioning', 'initializing'))::int AS pending_pools
          FROM db_servers
         WHERE server_type = 'shared' AND allocation_strategy = 'auto'`.execute(trx);
      const { free, pending, pending_pools } = rows[0]!;
      const target = Math.max(config.TENANTDB_SHARED_HEADROOM, 1) + unmet;
      const deficit = target - (free + pending);
      if (deficit <= 0) return [];
      const wanted = Math.ceil(deficit / config.TENANTDB_POOL_MAX_INSTANCES);
      const count = Math.min(wanted, config.TENANTDB_MAX_PENDING_POOLS - pending_pools);
      const ids: string[] = [];
      for (let i = 0; i < count; i++) {
        // Random names: a re-run or a second planner can never produce the same one.
        const row = await trx
          .insertInto('db_servers')
          .values({
            name: `pool-${randomBytes(5).toString('hex')}`,
            driver: defaultDriver(deps),
            server_type: 'shared',
            max_instances: config.TENANTDB_POOL_MAX_INSTANCES,
            status: 'provisioning',
          })
          .returning('id')
          .executeTakeFirstOrThrow();
        ids.push(row.id);
        await audit.record(
          {
            actor: 'capacity-planner',
            action: 'server.create',
            db_server_id: row.id,
            details: { free, pending, unmet, target, reason: payload.reason ?? 'scheduled' },
          },
          trx,
        );
      }
      if (count > 0)
        log.info({ free, pending, unmet, target, created: count }, 'provisioning shared capacity');
      return ids;
    });
    // After commit: a lost enqueue is made good by the next planner run seeing the pending row
    // (and by reconcile re-enqueueing provisioning rows without a job).
    for (const id of created) await queues.enqueue('provision-server', { server_id: id });
    return { created: created.length };
  };
}

/** Pools are provisioned with the first enabled driver (configuration orders them). */
function defaultDriver(deps: WorkerDeps) {
  const [first] = deps.drivers.keys();
  if (!first) throw new Error('no provisioner driver is enabled');
  return first;
}

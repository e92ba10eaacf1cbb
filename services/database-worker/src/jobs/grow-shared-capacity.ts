// grow-shared-capacity, the capacity planner: keep free shared slots (counting pools that are
// still starting) at or above the headroom plus the instances allocation turned away for want of
// room that still have no database (unmet demand, @tenantdb/jobs), and never below one, so demand
// finds room before it arrives and a burst is met by as many pools at once as it needs (up to
// TENANTDB_MAX_PENDING_POOLS) rather than one after another. Runs on a schedule and on every
// allocation miss; single flight by job id, and the decision is taken under a
// transaction-scoped advisory lock in case two ever overlap. The fleet ceiling and the bound on
// servers starting at once (TENANTDB_MAX_SERVERS, TENANTDB_MAX_STARTING_SERVERS, shared with
// database-service's dedicated and admin paths) are counted under the fleet's lock
// (LimitsRepo.lockFleet): pools they leave no room for are skipped and logged, not an error.
import { randomBytes } from 'node:crypto';
import { fleetRoom, LOCK_KEYS, takeTransactionLock } from '@tenantdb/catalog';
import { recentUnmetDemand } from '@tenantdb/jobs';
import type { JobContext, WorkerDeps } from '../context';

export function growSharedCapacity(deps: WorkerDeps) {
  const { db, servers, fleet, limits, tenants, queues, audit, config } = deps;
  const fleetLimits = {
    maxServers: config.TENANTDB_MAX_SERVERS,
    maxStarting: config.TENANTDB_MAX_STARTING_SERVERS,
  };

  return async (payload: { reason?: string }, { log }: JobContext) => {
    // Redis away: plan on the headroom alone.
    const askers = await recentUnmetDemand(queues).catch(() => [] as string[]);
    const created = await db.transaction().execute(async (trx) => {
      await takeTransactionLock(trx, LOCK_KEYS.capacityPlanner);
      // Turned away, and still without a database (a live row is one they got since).
      const unmet = await tenants.countWithoutHeld(askers, trx);
      const { free, pending, pending_pools } = await fleet.sharedCapacity(trx);
      const target = Math.max(config.TENANTDB_SHARED_HEADROOM, 1) + unmet;
      const deficit = target - (free + pending);
      if (deficit <= 0) return [];
      const wanted = Math.ceil(deficit / config.TENANTDB_POOL_MAX_INSTANCES);
      const planned = Math.min(wanted, config.TENANTDB_MAX_PENDING_POOLS - pending_pools);
      if (planned <= 0) return [];
      const fleetCount = await limits.lockFleet(trx);
      const count = Math.min(planned, fleetRoom(fleetCount, fleetLimits));
      if (count < planned) {
        log.warn(
          { ...fleetCount, ...fleetLimits, planned, skipped: planned - count },
          'fleet ceiling or provisioning bound reached; shared pools not provisioned',
        );
      }
      const ids: string[] = [];
      for (let i = 0; i < count; i++) {
        // Random names: a re-run or a second planner can never produce the same one.
        const name = `pool-${randomBytes(5).toString('hex')}`;
        const row = await servers.insert(
          {
            name,
            driver: defaultDriver(deps),
            server_type: 'shared',
            max_instances: config.TENANTDB_POOL_MAX_INSTANCES,
            status: 'provisioning',
          },
          trx,
        );
        if (!row) throw new Error(`a server named ${name} exists already`);
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

// The counts behind the limits on what callers can make: servers in the fleet and starting
// (the fleet ceiling and the provisioning bound), and one customer's instances and dedicated
// servers. Each count is read after its advisory transaction lock is taken, in the transaction
// that then inserts, so N concurrent requests see each other's rows and cannot overshoot.
// Lock order, where both are taken: a customer's lock first, then the fleet's.
import { sql } from 'kysely';
import type { CatalogTrx } from '../db';
import { LOCK_KEYS, takeTransactionLock } from '../locks';
import { HELD_STATUSES, STARTING_STATUSES } from '../types';

/** The fleet as its limits see it: servers tenantdb runs (not decommissioned), and those starting. */
export interface FleetCount {
  servers: number;
  starting: number;
}

export interface FleetLimits {
  /** Servers tenantdb runs at most (registered `external` servers are not counted). */
  maxServers: number;
  /** Servers (shared and dedicated) provisioning or initializing at once, at most. */
  maxStarting: number;
}

/** One customer's holdings, as its limits see them. */
export interface CustomerCount {
  /** Live instances: tenant rows creating or ready. */
  instances: number;
  /** Dedicated servers not decommissioned (an errored one counts until it is cleaned up). */
  dedicatedServers: number;
  /**
   * Of those, the ones that never got their tenant (no row on them but failed ones) and are not
   * in error: instances on their way, counted as instances too.
   */
  pendingDedicated: number;
}

/** Which fleet limit leaves no room for one more server, or undefined when one more fits. */
export function fleetLimitReached(
  count: FleetCount,
  limits: FleetLimits,
): 'servers' | 'starting' | undefined {
  if (count.servers >= limits.maxServers) return 'servers';
  if (count.starting >= limits.maxStarting) return 'starting';
  return undefined;
}

/** How many more servers the fleet limits let start now (never below 0). */
export function fleetRoom(count: FleetCount, limits: FleetLimits): number {
  return Math.max(0, Math.min(limits.maxServers - count.servers, limits.maxStarting - count.starting));
}

export function fleetCountStatement() {
  return sql<FleetCount>`
    SELECT count(*) FILTER (WHERE driver <> 'external')::int AS servers,
           count(*) FILTER (WHERE status = ANY(${STARTING_STATUSES}::text[]))::int AS starting
      FROM db_servers
     WHERE status <> 'decommissioned'`;
}

/** What `customerId` holds besides `instanceId` (the one asking: a repeat of it is not one more). */
export function customerCountStatement(customerId: string, instanceId: string) {
  return sql<CustomerCount>`
    SELECT (SELECT count(*) FROM tenant_databases
             WHERE customer_id = ${customerId} AND status = ANY(${HELD_STATUSES}::text[])
               AND instance_id IS DISTINCT FROM ${instanceId}::uuid)::int AS instances,
           count(*)::int AS "dedicatedServers",
           count(*) FILTER (WHERE status <> 'error' AND NOT EXISTS (
             SELECT 1 FROM tenant_databases t WHERE t.db_server_id = s.id AND t.status <> 'failed'
           ))::int AS "pendingDedicated"
      FROM db_servers s
     WHERE dedicated_to_customer_id = ${customerId} AND status <> 'decommissioned'
       AND dedicated_to_instance_id IS DISTINCT FROM ${instanceId}::uuid`;
}

export type LimitsRepo = ReturnType<typeof createLimitsRepo>;

export function createLimitsRepo() {
  return {
    /**
     * Takes the fleet's lock (LOCK_KEYS.serverCreation) and counts the fleet. Every path that
     * inserts a server tenantdb provisions calls this first in the inserting transaction.
     */
    async lockFleet(trx: CatalogTrx): Promise<FleetCount> {
      await takeTransactionLock(trx, LOCK_KEYS.serverCreation);
      return (await fleetCountStatement().execute(trx)).rows[0]!;
    },

    /**
     * Takes one customer's lock (LOCK_KEYS.customerLimits) and counts what it holds besides the
     * instance asking. Every path that gives a customer an instance or a dedicated server calls
     * this first in its transaction.
     */
    async lockCustomer(customerId: string, instanceId: string, trx: CatalogTrx): Promise<CustomerCount> {
      await takeTransactionLock(trx, LOCK_KEYS.customerLimits(customerId));
      return (await customerCountStatement(customerId, instanceId).execute(trx)).rows[0]!;
    },
  };
}

// The limits on what a caller can make (docs/security.md, "Limits on what a caller can make"):
// per customer (instances, dedicated servers; a plan's columns override the configured defaults)
// and over the fleet (a ceiling, and a bound on servers starting at once). Checked under the
// catalog's advisory locks (LimitsRepo) in the transaction that inserts, so nothing is created
// over a limit. A customer over its limit gets 409 (an answer: instance-service fails the signup
// at once with the message, where it would retry a 403 as a token problem); a fleet at its
// ceiling or bound gets 429 + Retry-After (transient: callers retry).
import type { CatalogTrx, FleetLimits, LimitsRepo, Plan } from '@tenantdb/catalog';
import { fleetLimitReached } from '@tenantdb/catalog';
import { ConflictError, HttpError } from '@tenantdb/http';
import type { DatabaseServiceConfig } from './config';

export interface LimitsConfig {
  maxInstancesPerCustomer: number;
  maxDedicatedPerCustomer: number;
  fleet: FleetLimits;
  retryAfterSeconds: number;
}

export function limitsConfig(config: DatabaseServiceConfig): LimitsConfig {
  return {
    maxInstancesPerCustomer: config.TENANTDB_MAX_INSTANCES_PER_CUSTOMER,
    maxDedicatedPerCustomer: config.TENANTDB_MAX_DEDICATED_PER_CUSTOMER,
    fleet: {
      maxServers: config.TENANTDB_MAX_SERVERS,
      maxStarting: config.TENANTDB_MAX_STARTING_SERVERS,
    },
    retryAfterSeconds: config.TENANTDB_RETRY_AFTER_SECONDS,
  };
}

/** A fleet limit: retrying later can succeed (servers finish starting, or are retired). */
export class FleetLimitError extends HttpError {
  constructor(message: string, retryAfterSeconds: number) {
    super(429, message, { 'retry-after': String(retryAfterSeconds) });
  }
}

type PlanLimits = Pick<Plan, 'max_instances_per_customer' | 'max_dedicated_servers_per_customer'>;

export type Limits = ReturnType<typeof createLimits>;

export function createLimits(deps: { limits: LimitsRepo; config: LimitsConfig }) {
  const { limits, config } = deps;

  return {
    /**
     * Before a new server row, in its transaction: the fleet's lock and counts; throws (429)
     * when the ceiling or the provisioning bound leaves no room.
     */
    async admitServer(trx: CatalogTrx): Promise<void> {
      const reached = fleetLimitReached(await limits.lockFleet(trx), config.fleet);
      if (reached === 'servers') {
        throw new FleetLimitError(
          `the fleet is at its ceiling of ${config.fleet.maxServers} servers; retry later`,
          config.retryAfterSeconds,
        );
      }
      if (reached === 'starting') {
        throw new FleetLimitError(
          `${config.fleet.maxStarting} servers are already provisioning; retry later`,
          config.retryAfterSeconds,
        );
      }
    },

    /**
     * Before a new live instance of a customer, in its transaction: the customer's lock and
     * counts; throws (409) at the instance limit. A dedicated server that has not got its tenant
     * yet counts as an instance on its way. `dedicated`: the instance brings a new dedicated
     * server, also counted against the dedicated limit.
     */
    async admitInstance(
      trx: CatalogTrx,
      ask: { customer_id: string; instance_id: string },
      plan: PlanLimits,
      opts: { dedicated: boolean },
    ): Promise<void> {
      // The instance asking is not counted: a repeat of it (another process creating it) is
      // answered as a repeat, never refused as one more.
      const held = await limits.lockCustomer(ask.customer_id, ask.instance_id, trx);
      const maxInstances = plan.max_instances_per_customer ?? config.maxInstancesPerCustomer;
      const instances = held.instances + held.pendingDedicated;
      if (instances >= maxInstances) {
        throw new ConflictError(
          `this customer holds ${instances} live instances, its limit (${maxInstances}); release one first`,
        );
      }
      const maxDedicated = plan.max_dedicated_servers_per_customer ?? config.maxDedicatedPerCustomer;
      if (opts.dedicated && held.dedicatedServers >= maxDedicated) {
        throw new ConflictError(
          `this customer has ${held.dedicatedServers} dedicated servers, its limit (${maxDedicated}); release one first`,
        );
      }
    },
  };
}

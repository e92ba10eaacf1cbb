import { createFleetRepo } from '@tenantdb/catalog';
import type { Fleet } from './harness';

/** Servers whose current_instances is not their tenant rows + the moves' slots (reconcile's measure). */
export const fleetRepoSlotDrift = (f: Fleet) => createFleetRepo(f.db).recordSlotDrift();

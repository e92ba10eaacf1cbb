// The scenarios of `pnpm bench`, in run order. A new scenario is a module exporting a Scenario
// and one line here; it can read what earlier ones left in ctx.state (baselines, allocations),
// and names them in its `needs` so that `--only` runs them first.
import type { Scenario } from '../context';
import { adminPolling } from './admin-polling';
import { allocateNew, rawCreate } from './allocate';
import { allocateWarm, rawClaim } from './allocate-warm';
import { rawRead, readAllocation, repeatAllocate } from './catalog-paths';
import { drain } from './drain';
import { move } from './move';
import { provisionLocal } from './provision-local';
import { provisionSwarm } from './provision-swarm';
import { rawTx } from './raw-tx';
import { signupBurst } from './signup-burst';
import { steadyAllocation } from './steady-allocation';
import { timeToLogin } from './time-to-login';
import { timeToLoginWarm } from './time-to-login-warm';
import { warmFleet } from './warm-fleet';

export const scenarios: Scenario[] = [
  rawTx,
  rawCreate,
  allocateNew,
  rawRead,
  repeatAllocate,
  readAllocation,
  // Issue 7's whole-system scenarios on the registered pools; signup-burst empties the fleet, so last.
  steadyAllocation,
  adminPolling,
  timeToLogin,
  provisionLocal,
  provisionSwarm,
  warmFleet,
  timeToLoginWarm,
  rawClaim,
  allocateWarm,
  // Pools of its own, every other one cordoned meanwhile (and opened again after).
  move,
  signupBurst,
  // Makes two pools of its own and cordons every other one: after everything that needs them.
  drain,
];

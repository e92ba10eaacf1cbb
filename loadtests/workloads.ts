// The whole-system workloads of `pnpm bench` (signup-burst, steady-allocation, admin-polling) and
// of the k6 scripts in loadtests/k6/: one definition of their rates, durations, endpoints and
// thresholds. The bench scenarios read it; k6 scripts cannot import TypeScript, so they spell the
// same values out and loadtests/k6/k6-equivalence.test.ts fails when the two differ.

/** A signup portal's burst on an empty fleet: every create accepted, every instance ready in time. */
export const SIGNUP_BURST = {
  /** POST /api/v1/instances requests, spread evenly over `durationS` (open loop). */
  instances: 500,
  durationS: 30,
  endpoint: { create: 'POST /api/v1/instances', get: 'GET /api/v1/instances/{id}?customer_id={customer_id}' },
  planTier: 'standard',
  /** Target: each instance ready within this long of its create request being due. */
  readyWithinS: 120,
  /** k6 polls each instance this often until it is ready or failed (it cannot receive callbacks). */
  pollIntervalS: 1,
} as const;

/** Open-loop allocations through database-service at a fixed rate, for a fixed time. */
export const STEADY_ALLOCATION = {
  /**
   * Sustainable on a 2-core machine with fsync on: each allocation is a CREATE DATABASE, and
   * placement (strategy pack) sends one request at a time to one pool server, which makes ~8/s at
   * best there (closed-loop RAW-CREATE reaches ~14/s over two).
   */
  ratePerSec: 5,
  durationS: 30,
  endpoint: 'POST /api/database/allocate',
  planTier: 'standard',
} as const;

/** Admin dashboards polling the fleet while allocations go on in the background. */
export const ADMIN_POLLING = {
  /** Closed-loop clients per endpoint, each sending its next request when the previous answered. */
  clientsPerEndpoint: 4,
  durationS: 20,
  endpoints: {
    stats: 'GET /api/database/admin/stats',
    pools: 'GET /api/database/admin/pools?limit=100&offset=0',
    allocation: 'GET /api/database/allocations/{instance_id}',
  },
  /** Allocations started per second meanwhile (open loop), through POST /api/database/allocate. */
  backgroundAllocationsPerSec: 2,
  planTier: 'standard',
} as const;

/** Thresholds in k6's syntax: the targets above, as the k6 scripts must state them. */
export const K6_THRESHOLDS = {
  'signup-burst': {
    // Every create answered 202, nothing else; every instance ready within the bound.
    http_req_failed: ['rate==0'],
    signup_accepted: ['rate==1'],
    instance_ready: ['rate==1'],
    time_to_ready: [`max<=${SIGNUP_BURST.readyWithinS * 1000}`],
    dropped_iterations: ['count==0'],
  },
  // No target: the figures are information (as in `pnpm bench`); only a generator that could not
  // keep the rate makes the run invalid.
  'steady-allocation': { dropped_iterations: ['count==0'] },
  'admin-polling': { dropped_iterations: ['count==0'] },
} as const;

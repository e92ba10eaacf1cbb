// k6 version of `pnpm bench --only steady-allocation`: new allocations through database-service at
// 5/s for 30 s (open loop: constant arrival rate). No target: the figures are information; the
// run is invalid only if k6 could not keep the rate (dropped iterations). The numbers are
// loadtests/workloads.ts's STEADY_ALLOCATION; k6-equivalence.test.ts keeps them equal.
//
//   BASE_URL=http://127.0.0.1:8005 TOKEN=<allocate token> k6 run loadtests/k6/steady-allocation.js
import { check } from 'k6';
import http from 'k6/http';
import { Rate } from 'k6/metrics';
import { uuidv4 } from './uuid.js';

const RATE_PER_S = 5;
const DURATION_S = 30;
const PLAN_TIER = 'standard';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8005';
const HEADERS = { authorization: `Bearer ${__ENV.TOKEN}`, 'content-type': 'application/json' };

const accepted202 = new Rate('allocate_202');

export const options = {
  scenarios: {
    steady_allocation: {
      executor: 'constant-arrival-rate',
      rate: RATE_PER_S,
      timeUnit: '1s',
      duration: `${DURATION_S}s`,
      preAllocatedVUs: 20,
      maxVUs: 200,
    },
  },
  thresholds: {
    dropped_iterations: ['count==0'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max', 'count'],
};

export default function () {
  const res = http.post(
    `${BASE_URL}/api/database/allocate`,
    JSON.stringify({ instance_id: uuidv4(), customer_id: uuidv4(), plan_tier: PLAN_TIER }),
    { headers: HEADERS, tags: { name: 'POST /api/database/allocate' } },
  );
  accepted202.add(res.status === 202);
  check(res, { 'allocated (200) or provisioning (202)': (r) => r.status === 200 || r.status === 202 });
}

// k6 version of `pnpm bench --only signup-burst`: 500 instances created through instance-service
// in 30 s (open loop: constant arrival rate), each polled until ready or failed. Passes only if
// every create is answered 202 and every instance is ready within 120 s of its request. The
// numbers are loadtests/workloads.ts's SIGNUP_BURST; k6-equivalence.test.ts keeps them equal.
//
//   BASE_URL=http://127.0.0.1:8003 TOKEN=<portal token> k6 run loadtests/k6/signup-burst.js
import { check, sleep } from 'k6';
import http from 'k6/http';
import { Rate, Trend } from 'k6/metrics';
import { uuidv4 } from './uuid.js';

const INSTANCES = 500;
const DURATION_S = 30;
const READY_WITHIN_S = 120;
const POLL_INTERVAL_S = 1;
const PLAN_TIER = 'standard';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8003';
const HEADERS = { authorization: `Bearer ${__ENV.TOKEN}`, 'content-type': 'application/json' };

const signupAccepted = new Rate('signup_accepted');
const instanceReady = new Rate('instance_ready');
const timeToReady = new Trend('time_to_ready', true);

export const options = {
  scenarios: {
    signup_burst: {
      executor: 'constant-arrival-rate',
      rate: INSTANCES,
      timeUnit: `${DURATION_S}s`,
      duration: `${DURATION_S}s`,
      // An iteration lasts until its instance is ready (up to the bound): up to one VU per instance.
      preAllocatedVUs: 100,
      maxVUs: INSTANCES,
      gracefulStop: `${READY_WITHIN_S + 10}s`,
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    signup_accepted: ['rate==1'],
    instance_ready: ['rate==1'],
    time_to_ready: [`max<=${READY_WITHIN_S * 1000}`],
    dropped_iterations: ['count==0'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max', 'count'],
};

export default function () {
  const started = Date.now();
  const customerId = uuidv4();
  const res = http.post(
    `${BASE_URL}/api/v1/instances`,
    JSON.stringify({ customer_id: customerId, name: `k6 signup ${__VU}-${__ITER}`, plan_tier: PLAN_TIER }),
    { headers: HEADERS, tags: { name: 'POST /api/v1/instances' } },
  );
  const accepted = check(res, { 'create answered 202': (r) => r.status === 202 });
  signupAccepted.add(accepted);
  if (!accepted) {
    instanceReady.add(false);
    return;
  }
  const id = res.json('id');
  // k6 cannot receive the callback the bench times: it polls, so its figure is up to one poll late.
  while (Date.now() - started < READY_WITHIN_S * 1000) {
    sleep(POLL_INTERVAL_S);
    const got = http.get(`${BASE_URL}/api/v1/instances/${id}?customer_id=${customerId}`, {
      headers: HEADERS,
      tags: { name: 'GET /api/v1/instances/{id}' },
    });
    const status = got.status === 200 ? got.json('status') : undefined;
    if (status === 'ready') {
      timeToReady.add(Date.now() - started);
      instanceReady.add(true);
      return;
    }
    if (status === 'failed') break;
  }
  instanceReady.add(false);
}

// k6 version of `pnpm bench --only admin-polling`: 4 closed-loop clients (VUs) on each of
// GET /admin/stats, the first page of GET /admin/pools and GET /allocations/{id}, for 20 s, while
// 2 new allocations/s arrive in the background. No target: the figures are information; the run
// is invalid only if k6 could not keep the background rate. The numbers are loadtests/workloads.ts's
// ADMIN_POLLING; k6-equivalence.test.ts keeps them equal.
//
//   BASE_URL=http://127.0.0.1:8005 ADMIN_TOKEN=<admin token> TOKEN=<allocate token> \
//     k6 run loadtests/k6/admin-polling.js
import { check } from 'k6';
import http from 'k6/http';
import { Rate } from 'k6/metrics';
import { uuidv4 } from './uuid.js';

const CLIENTS_PER_ENDPOINT = 4;
const DURATION_S = 20;
const BACKGROUND_ALLOCATIONS_PER_S = 2;
const PLAN_TIER = 'standard';
/** Allocations made in setup() for the allocation reads (the bench reads those earlier scenarios made). */
const SETUP_ALLOCATIONS = 20;

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8005';
const ADMIN = { headers: { authorization: `Bearer ${__ENV.ADMIN_TOKEN}` } };
const ALLOCATE = { authorization: `Bearer ${__ENV.TOKEN}`, 'content-type': 'application/json' };

const accepted202 = new Rate('allocate_202');

const polling = (exec) => ({
  executor: 'constant-vus',
  vus: CLIENTS_PER_ENDPOINT,
  duration: `${DURATION_S}s`,
  exec,
});

export const options = {
  scenarios: {
    stats: polling('stats'),
    pools: polling('pools'),
    allocation: polling('allocation'),
    background_allocations: {
      executor: 'constant-arrival-rate',
      rate: BACKGROUND_ALLOCATIONS_PER_S,
      timeUnit: '1s',
      duration: `${DURATION_S}s`,
      preAllocatedVUs: 5,
      maxVUs: 50,
      exec: 'allocate',
    },
  },
  thresholds: {
    dropped_iterations: ['count==0'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max', 'count'],
};

function newAllocation() {
  const instanceId = uuidv4();
  const res = http.post(
    `${BASE_URL}/api/database/allocate`,
    JSON.stringify({ instance_id: instanceId, customer_id: uuidv4(), plan_tier: PLAN_TIER }),
    { headers: ALLOCATE, tags: { name: 'POST /api/database/allocate' } },
  );
  accepted202.add(res.status === 202);
  check(res, { 'allocated (200) or provisioning (202)': (r) => r.status === 200 || r.status === 202 });
  return res.status === 200 ? instanceId : undefined;
}

export function setup() {
  const ids = [];
  for (let i = 0; i < SETUP_ALLOCATIONS; i++) {
    const id = newAllocation();
    if (id) ids.push(id);
  }
  return { ids };
}

export function stats() {
  const res = http.get(`${BASE_URL}/api/database/admin/stats`, {
    ...ADMIN,
    tags: { name: 'GET /admin/stats' },
  });
  check(res, { 'stats 200': (r) => r.status === 200 });
}

export function pools() {
  const res = http.get(`${BASE_URL}/api/database/admin/pools?limit=100&offset=0`, {
    ...ADMIN,
    tags: { name: 'GET /admin/pools' },
  });
  check(res, { 'pools 200': (r) => r.status === 200 });
}

export function allocation(data) {
  const id = data.ids[Math.floor(Math.random() * data.ids.length)];
  const res = http.get(`${BASE_URL}/api/database/allocations/${id}`, {
    headers: { authorization: ALLOCATE.authorization },
    tags: { name: 'GET /allocations/{id}' },
  });
  check(res, { 'allocation 200': (r) => r.status === 200 });
}

export function allocate() {
  newAllocation();
}

// The k6 scripts restate loadtests/workloads.ts (k6 runs plain JavaScript, not our TypeScript):
// this runs each script's module code with stand-ins for k6's modules, then checks its options
// (executor, rate, duration, clients, thresholds) against the workload, and runs its iterations to
// check the requests they send (method, path, plan, auth) and, for the signup burst, how long it
// polls. A change to either side without the other fails here.
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { ADMIN_POLLING, K6_THRESHOLDS, SIGNUP_BURST, STEADY_ALLOCATION } from '../workloads';

const BASE_URL = 'http://k6.invalid:1234';
const ENV = { BASE_URL, TOKEN: 'token-of-test', ADMIN_TOKEN: 'admin-token-of-test' };

interface Sent {
  method: string;
  url: string;
  body?: string;
  headers: Record<string, string>;
}

interface Response {
  status: number;
  body: Record<string, unknown>;
}

type Loaded = {
  // biome-ignore lint/suspicious/noExplicitAny: the script's options, checked field by field
  options: any;
  fns: Record<string, (data?: unknown) => unknown>;
  sent: Sent[];
  metrics: Metrics;
};
type Metrics = Map<string, { type: string; values: unknown[] }>;

/**
 * Evaluates a k6 script: its k6 imports become stand-ins, its exports plain bindings. `answer`
 * decides each response; sleep() advances the script's clock (Date.now) instead of waiting.
 */
function load(file: string, answer: (req: Sent) => Response): Loaded {
  const source = readFileSync(new URL(file, import.meta.url), 'utf8');
  const exported = [...source.matchAll(/^export function (\w+)/gm)].map((m) => m[1]!);
  // A local module the script imports (./uuid.js) is inlined, its exports made plain bindings.
  const local = (name: string) =>
    readFileSync(new URL(name, import.meta.url), 'utf8').replace(/^export (const|function) /gm, '$1 ');
  const code = source
    .replace(/^import .* from 'k6(\/\w+)?';$/gm, '')
    .replace(/^import \{ \w+ \} from '(\.\/[\w-]+\.js)';$/gm, (_, file: string) => local(file))
    .replace(/^export default function/m, 'function __default')
    .replace(/^export (const|function) /gm, '$1 ');
  if (/^\s*(import|export)\b/m.test(code))
    throw new Error(`${file}: an import or export the test cannot run`);

  const sent: Sent[] = [];
  const metrics: Metrics = new Map();
  let clock = 1_000_000;
  const respond = (req: Sent) => {
    sent.push(req);
    const r = answer(req);
    return { status: r.status, json: (key?: string) => (key === undefined ? r.body : r.body[key]) };
  };
  const metric = (type: string) =>
    class {
      constructor(name: string) {
        metrics.set(name, { type, values: [] });
        this.add = (v: unknown) => metrics.get(name)!.values.push(v);
      }
      add: (v: unknown) => void;
    };
  const context = {
    __ENV: ENV,
    __VU: 1,
    __ITER: 0,
    Date: { now: () => clock },
    Math,
    JSON,
    http: {
      get: (url: string, params?: { headers?: Record<string, string> }) =>
        respond({ method: 'GET', url, headers: params?.headers ?? {} }),
      post: (url: string, body: string, params?: { headers?: Record<string, string> }) =>
        respond({ method: 'POST', url, body, headers: params?.headers ?? {} }),
    },
    check: (value: unknown, checks: Record<string, (v: unknown) => boolean>) =>
      Object.values(checks).every((f) => f(value)),
    sleep: (s: number) => {
      clock += s * 1000;
    },
    Rate: metric('rate'),
    Trend: metric('trend'),
    Counter: metric('counter'),
  };
  const names = ['options', ...exported, "typeof __default === 'function' ? __default : undefined"];
  const result = vm.runInNewContext(
    `${code}\n;({ ${names.map((n, i) => (i > exported.length ? `default: ${n}` : n)).join(', ')} })`,
    context,
  );
  const { options, ...fns } = result;
  return { options, fns, sent, metrics };
}

/** k6 durations as the scripts write them ('30s', '2m'). */
function seconds(d: string): number {
  const m = /^(\d+)(s|m)$/.exec(d);
  if (!m) throw new Error(`unexpected duration ${d}`);
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1);
}

/** 'GET /api/x/{id}' → a pattern for what a request to it looks like. */
function endpoint(spec: string): { method: string; path: RegExp } {
  const [method, path] = spec.split(' ') as [string, string];
  const escaped = path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{\w+\}/g, '[0-9a-f-]{36}');
  return { method, path: new RegExp(`^${escaped}$`) };
}

const pathOf = (url: string) => url.slice(BASE_URL.length);
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function expectRequest(req: Sent | undefined, spec: string, token: string) {
  expect(req, `a request to ${spec}`).toBeDefined();
  const e = endpoint(spec);
  expect(req!.method).toBe(e.method);
  expect(req!.url.startsWith(BASE_URL)).toBe(true);
  expect(pathOf(req!.url)).toMatch(e.path);
  expect(req!.headers.authorization).toBe(`Bearer ${token}`);
}

/** Per second and in all, of a constant-arrival-rate scenario. */
function arrival(s: { executor: string; rate: number; timeUnit: string; duration: string }) {
  expect(s.executor).toBe('constant-arrival-rate');
  const perSec = s.rate / seconds(s.timeUnit);
  return { perSec, total: perSec * seconds(s.duration), durationS: seconds(s.duration) };
}

describe('loadtests/k6 scripts match loadtests/workloads.ts', () => {
  it('signup-burst.js: 500 creates in 30 s, each polled until ready within the bound', () => {
    let polls = 0;
    const ready = load('./signup-burst.js', (req) =>
      req.method === 'POST'
        ? { status: 202, body: { id: '0f0f0f0f-0000-4000-8000-000000000001', status: 'pending' } }
        : { status: 200, body: { status: ++polls < 3 ? 'waiting_for_database' : 'ready' } },
    );
    const s = ready.options.scenarios.signup_burst;
    const a = arrival(s);
    expect(a.durationS).toBe(SIGNUP_BURST.durationS);
    expect(a.total).toBeCloseTo(SIGNUP_BURST.instances, 9);
    expect(s.maxVUs).toBeGreaterThanOrEqual(SIGNUP_BURST.instances);
    expect(seconds(s.gracefulStop)).toBeGreaterThanOrEqual(SIGNUP_BURST.readyWithinS);
    expect(ready.options.thresholds).toEqual(K6_THRESHOLDS['signup-burst']);

    ready.fns.default!();
    const [create, ...gets] = ready.sent;
    expectRequest(create, SIGNUP_BURST.endpoint.create, ENV.TOKEN);
    const body = JSON.parse(create!.body!);
    expect(body.plan_tier).toBe(SIGNUP_BURST.planTier);
    expect(body.customer_id).toMatch(uuid);
    expect(gets).toHaveLength(3);
    for (const g of gets) {
      expectRequest(g, SIGNUP_BURST.endpoint.get, ENV.TOKEN);
      expect(g.url).toContain(`customer_id=${body.customer_id}`);
    }
    // Ready at the third poll, one poll interval apart.
    expect(ready.metrics.get('time_to_ready')!.values).toEqual([3 * SIGNUP_BURST.pollIntervalS * 1000]);
    expect(ready.metrics.get('instance_ready')!.values).toEqual([true]);
    expect(ready.metrics.get('signup_accepted')!.values).toEqual([true]);

    // Never ready: it gives up at the bound and counts the instance as not ready.
    const never = load('./signup-burst.js', (req) =>
      req.method === 'POST'
        ? { status: 202, body: { id: '0f0f0f0f-0000-4000-8000-000000000002' } }
        : { status: 200, body: { status: 'waiting_for_database' } },
    );
    never.fns.default!();
    expect(never.sent.length - 1).toBe(SIGNUP_BURST.readyWithinS / SIGNUP_BURST.pollIntervalS);
    expect(never.metrics.get('instance_ready')!.values).toEqual([false]);
    expect(never.metrics.get('time_to_ready')!.values).toEqual([]);

    // A create not answered 202 fails the burst.
    const refused = load('./signup-burst.js', () => ({ status: 503, body: {} }));
    refused.fns.default!();
    expect(refused.sent).toHaveLength(1);
    expect(refused.metrics.get('signup_accepted')!.values).toEqual([false]);
  });

  it('steady-allocation.js: allocations at the same rate for as long', () => {
    const k6 = load('./steady-allocation.js', () => ({ status: 200, body: {} }));
    const a = arrival(k6.options.scenarios.steady_allocation);
    expect(a.perSec).toBe(STEADY_ALLOCATION.ratePerSec);
    expect(a.durationS).toBe(STEADY_ALLOCATION.durationS);
    expect(Object.keys(k6.options.scenarios)).toEqual(['steady_allocation']);
    expect(k6.options.thresholds).toEqual(K6_THRESHOLDS['steady-allocation']);

    k6.fns.default!();
    expect(k6.sent).toHaveLength(1);
    expectRequest(k6.sent[0], STEADY_ALLOCATION.endpoint, ENV.TOKEN);
    const body = JSON.parse(k6.sent[0]!.body!);
    expect(body.plan_tier).toBe(STEADY_ALLOCATION.planTier);
    expect(body.instance_id).toMatch(uuid);
  });

  it('admin-polling.js: the same clients on the same endpoints, the same background allocations', () => {
    const k6 = load('./admin-polling.js', (req) =>
      req.method === 'POST' ? { status: 200, body: {} } : { status: 200, body: {} },
    );
    const scenarios = k6.options.scenarios;
    const endpoints = Object.keys(ADMIN_POLLING.endpoints) as (keyof typeof ADMIN_POLLING.endpoints)[];
    expect(Object.keys(scenarios).sort()).toEqual([...endpoints, 'background_allocations'].sort());
    const data = k6.fns.setup!() as { ids: string[] };
    expect(data.ids.length).toBeGreaterThan(0);
    for (const e of endpoints) {
      const s = scenarios[e];
      expect(s.executor).toBe('constant-vus');
      expect(s.vus).toBe(ADMIN_POLLING.clientsPerEndpoint);
      expect(seconds(s.duration)).toBe(ADMIN_POLLING.durationS);
      k6.sent.length = 0;
      k6.fns[s.exec]!(data);
      expect(k6.sent).toHaveLength(1);
      expectRequest(k6.sent[0], ADMIN_POLLING.endpoints[e], e === 'allocation' ? ENV.TOKEN : ENV.ADMIN_TOKEN);
    }
    const bg = scenarios.background_allocations;
    const a = arrival(bg);
    expect(a.perSec).toBe(ADMIN_POLLING.backgroundAllocationsPerSec);
    expect(a.durationS).toBe(ADMIN_POLLING.durationS);
    k6.sent.length = 0;
    k6.fns[bg.exec]!();
    expect(k6.sent).toHaveLength(1);
    expectRequest(k6.sent[0], 'POST /api/database/allocate', ENV.TOKEN);
    expect(JSON.parse(k6.sent[0]!.body!).plan_tier).toBe(ADMIN_POLLING.planTier);
    expect(k6.options.thresholds).toEqual(K6_THRESHOLDS['admin-polling']);
  });
});

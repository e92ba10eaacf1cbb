// Bad input never changes anything: every malformed, oversize, unknown, hostile or unauthorized
// request gets a 4xx in the one error shape {statusCode, error, message, requestId} — no stack
// trace, no echo of the hostile text — and the catalog, the queue and every pool server are
// exactly as they were. Also: auth scopes, 404s, request ids and the per-token rate limit.
import { generatePassword } from '@tenantdb/secrets';
import { type RunningPostgres, startPostgres } from '@tenantdb/testkit';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, newIds, onServer, startHarness } from './harness';

const SQL_FRAGMENT = "x'; DROP DATABASE postgres; --";
/** Quotes, terminators, dollar quoting, NUL and backslashes: each must be inert. */
const HOSTILE = [
  SQL_FRAGMENT,
  "Robert'); DROP TABLE db_servers; --",
  '"',
  "'",
  '\u0000',
  'a\u0000b',
  '$$',
  '$x$ DROP DATABASE postgres $x$',
  '\\',
  '%s%n',
];
const ECHO = /DROP (DATABASE|TABLE)/i;
const CONTROL_CHARACTER = /\p{Cc}/u;
/** Traces of a stack or of the source tree in a response. */
const STACK = /\n\s*at |\bat [\w.<>]+ \(|\.[cm]?[jt]s:\d+|node_modules|\/work\/|\/src\//;
const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
};

let h: Harness;
/** A reachable Postgres server that is NOT registered: register requests get as far as a login. */
let spare: RunningPostgres;
let poolId: string;

beforeAll(async () => {
  h = await startHarness({ pools: [5] });
  poolId = h.servers[0]!.id;
  const password = generatePassword();
  h.remember(password);
  spare = await startPostgres({ password, settings: { fsync: 'off' } });
});
afterAll(async () => {
  await spare?.destroy();
  await h?.close();
});

interface Sent {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: a parsed JSON body, checked field by field
  body: any;
  raw: string;
  headers: Record<string, string | string[] | number | undefined>;
}

interface SendOptions {
  /** Serialized as JSON with content-type application/json. */
  body?: unknown;
  /** Sent as is; set the content-type in headers. */
  raw?: string;
  /** Defaults to the admin token; null sends no Authorization header. */
  token?: string | null;
  headers?: Record<string, string>;
}

async function send(target: Harness, method: string, url: string, opts: SendOptions = {}): Promise<Sent> {
  const token = opts.token === undefined ? target.adminToken : opts.token;
  const headers: Record<string, string> = {
    ...(token === null ? {} : { authorization: `Bearer ${token}` }),
    ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }),
    ...opts.headers,
  };
  const payload = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  const res = await target.app.inject({
    method: method as InjectOptions['method'],
    url,
    headers,
    ...(payload === undefined ? {} : { payload }),
  });
  let body: unknown;
  try {
    body = res.body ? JSON.parse(res.body) : undefined;
  } catch {
    body = undefined;
  }
  return { status: res.statusCode, body, raw: res.body, headers: res.headers };
}
const req = (method: string, url: string, opts?: SendOptions) => send(h, method, url, opts);

/** The one error shape, nothing else in it, and nothing that should not leave the process. */
function expectError(res: Sent, status: number | number[], label = '') {
  const allowed = Array.isArray(status) ? status : [status];
  const context = `${label} → ${res.status} ${res.raw.slice(0, 300)}`;
  expect(allowed, context).toContain(res.status);
  expect(res.body, context).toBeTypeOf('object');
  expect(Object.keys(res.body).sort(), context).toEqual(['error', 'message', 'requestId', 'statusCode']);
  expect(res.body.statusCode, context).toBe(res.status);
  expect(res.body.error, context).toBe(REASONS[res.status]);
  expect(res.body.message, context).toBeTypeOf('string');
  expect(res.body.message.length, context).toBeGreaterThan(0);
  expect(res.body.requestId, context).toBe(res.headers['x-request-id']);
  expect(res.raw, context).not.toMatch(STACK);
  expect(res.raw, context).not.toMatch(ECHO);
  expect(res.headers['content-type'], context).toMatch(/^application\/json/);
}

/** Everything a request could have touched: catalog rows, queued jobs, databases and roles. */
async function snapshot() {
  const count = async (table: 'db_servers' | 'tenant_databases' | 'audit_events' | 'plans') =>
    Number(
      (
        await h.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  const onPool = async (server: RunningPostgres) => ({
    databases: await onServer(
      server,
      'SELECT datname, datacl::text AS acl FROM pg_database ORDER BY datname',
    ),
    roles: await onServer(
      server,
      `SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolconnlimit, rolpassword
         FROM pg_authid ORDER BY rolname`,
    ),
  });
  return {
    counts: {
      db_servers: await count('db_servers'),
      tenant_databases: await count('tenant_databases'),
      audit_events: await count('audit_events'),
      plans: await count('plans'),
    },
    db_servers: await h.db.selectFrom('db_servers').selectAll().orderBy('id').execute(),
    tenant_databases: await h.db.selectFrom('tenant_databases').selectAll().orderBy('id').execute(),
    plans: await h.db.selectFrom('plans').selectAll().orderBy('plan_tier').execute(),
    jobs: await h.queues.queue('provisioning').getJobCounts(),
    pool: await onPool(h.servers[0]!),
    spare: await onPool(spare),
  };
}

async function expectNothingChanged(run: () => Promise<void>) {
  const before = await snapshot();
  expect(before.counts.db_servers).toBe(1);
  await run();
  expect(await snapshot()).toEqual(before);
}

// ---- valid bodies: each case below breaks exactly one thing in one of these ------------------

const allocateBody = () => newIds('standard');
const dedicatedBody = () => newIds('premium');
const createBody = () => ({ name: 'fresh-pool', max_instances: 5 });
/** Everything right but the password: a request that slips through validation ends at a 422. */
const registerBody = () => ({
  name: 'spare-pool',
  host: spare.host,
  port: spare.port,
  admin_user: spare.user,
  admin_password: 'not-the-password',
  max_instances: 5,
});

interface BodyRoute {
  url: string;
  body: () => Record<string, unknown>;
  /** What a request that passes validation but is still wrong answers (register: 422). */
  late: number[];
}
type RouteName = 'allocate' | 'dedicated' | 'create' | 'register';
const BODY_ROUTES: Record<RouteName, BodyRoute> = {
  allocate: { url: '/api/database/allocate', body: allocateBody, late: [] },
  dedicated: { url: '/api/database/provision-dedicated', body: dedicatedBody, late: [] },
  create: { url: '/api/database/admin/pools', body: createBody, late: [] },
  register: { url: '/api/database/admin/pools/register', body: registerBody, late: [422] },
};
const entries = <K extends string, V>(record: Record<K, V>) => Object.entries(record) as [K, V][];

describe('bad input → 4xx and nothing changed', () => {
  it('rejects non-UUID ids in paths, bodies and the list query', async () => {
    const notUuids = [
      '123',
      'not-a-uuid',
      '00000000-0000-0000-0000-00000000000g',
      `${crypto.randomUUID()}0`,
      `${crypto.randomUUID()} `,
      crypto.randomUUID().replaceAll('-', ''),
      SQL_FRAGMENT,
      '1 OR 1=1',
      "' OR ''='",
    ];
    await expectNothingChanged(async () => {
      for (const bad of notUuids) {
        const p = encodeURIComponent(bad);
        for (const [method, url] of [
          ['GET', `/api/database/allocations/${p}`],
          ['DELETE', `/api/database/allocations/${p}`],
          ['POST', `/api/database/allocations/${p}/rotate-credentials`],
          ['GET', `/api/database/admin/pools/${p}`],
          ['POST', `/api/database/admin/pools/${p}/health-check`],
        ] as const) {
          const res = await req(method, url);
          expectError(res, 400, `${method} ${url}`);
          expect(res.body.message).toMatch(/^params\/(instance_id|id): /);
        }
        for (const route of ['allocate', 'dedicated'] as const) {
          for (const field of ['instance_id', 'customer_id']) {
            const res = await req('POST', BODY_ROUTES[route].url, {
              body: { ...BODY_ROUTES[route].body(), [field]: bad },
            });
            expectError(res, 400, `${route}.${field}=${bad}`);
            expect(res.body.message).toContain(`body/${field}`);
          }
        }
      }
    });
  });

  it('rejects bodies with a required field missing, and empty or non-object bodies', async () => {
    const required: Record<RouteName, string[]> = {
      allocate: ['instance_id', 'customer_id', 'plan_tier'],
      dedicated: ['instance_id', 'customer_id', 'plan_tier'],
      create: ['max_instances'],
      register: ['name', 'host', 'admin_user', 'admin_password', 'max_instances'],
    };
    await expectNothingChanged(async () => {
      for (const [route, fields] of entries(required)) {
        const { url, body } = BODY_ROUTES[route];
        for (const field of fields) {
          const { [field]: _dropped, ...rest } = body();
          const res = await req('POST', url, { body: rest });
          expectError(res, 400, `${route} without ${field}`);
          expect(res.body.message).toContain(`body/${field}`);
        }
        for (const whole of [{}, [], null, 'a string', 42, true, [body()]]) {
          expectError(await req('POST', url, { body: whole }), 400, `${route} body=${JSON.stringify(whole)}`);
        }
        // no body at all
        expectError(await req('POST', url), 400, `${route} without a body`);
      }
    });
  });

  it('rejects unknown fields, including hostile field names and prototype keys', async () => {
    await expectNothingChanged(async () => {
      for (const [route, { url, body }] of entries(BODY_ROUTES)) {
        const extra = await req('POST', url, { body: { ...body(), is_admin: true } });
        expectError(extra, 400, `${route} + is_admin`);
        expect(extra.body.message).toContain('is_admin');

        for (const key of [SQL_FRAGMENT, '$$', '"', 'db_password', 'status']) {
          expectError(await req('POST', url, { body: { ...body(), [key]: 'x' } }), 400, `${route} + ${key}`);
        }
        for (const raw of [
          `{"__proto__": {"is_admin": true}, ${JSON.stringify(body()).slice(1)}`,
          `{"constructor": {"prototype": {"is_admin": true}}, ${JSON.stringify(body()).slice(1)}`,
        ]) {
          const res = await req('POST', url, { raw, headers: { 'content-type': 'application/json' } });
          expectError(res, 400, `${route} ${raw.slice(0, 30)}`);
        }
      }
      // the list query is strict too
      expectError(await req('GET', '/api/database/admin/pools?is_admin=true'), 400, 'pools?is_admin');
      expectError(
        await req('GET', `/api/database/admin/pools?${encodeURIComponent(SQL_FRAGMENT)}=1`),
        400,
        'pools?<sql>=1',
      );
    });
  });

  it('rejects oversize strings, out-of-range numbers and wrong types', async () => {
    const long = (n: number) => 'a'.repeat(n);
    const cases: [route: RouteName, patch: Record<string, unknown>][] = [
      ['allocate', { plan_tier: long(10_000) }],
      ['allocate', { plan_tier: long(33) }],
      ['allocate', { plan_tier: '' }],
      ['allocate', { instance_id: long(10_000) }],
      ['allocate', { require_dedicated: 'true' }],
      ['allocate', { require_dedicated: 1 }],
      ['allocate', { require_dedicated: null }],
      ['allocate', { plan_tier: 7 }],
      ['allocate', { plan_tier: ['standard'] }],
      ['allocate', { plan_tier: { $ne: null } }],
      ['allocate', { instance_id: null }],
      ['dedicated', { plan_tier: long(10_000) }],
      ['dedicated', { customer_id: 12345 }],
      ['create', { name: long(300) }],
      ['create', { name: long(64) }],
      ['create', { name: '' }],
      ['create', { name: 'Upper-Case' }],
      ['create', { name: '-leading' }],
      ['create', { server_type: 'dedicated' }],
      ['create', { driver: 'external' }],
      ['create', { priority: -1 }],
      ['create', { priority: 10_001 }],
      ['create', { cpu_limit: 0 }],
      ['create', { memory_limit_mb: 64 }],
      ['create', { storage_size_gb: 0.5 }],
      ['create', { placement: { zone: long(257) } }],
      ['create', { placement: { [long(65)]: 'x' } }],
      ['create', { placement: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])) }],
      ['create', { placement: { zone: 1 } }],
      ['create', { placement: ['zone'] }],
      ['register', { name: long(300) }],
      ['register', { host: long(300) }],
      ['register', { host: 'exa mple.com' }],
      ['register', { host: '' }],
      ['register', { port: 0 }],
      ['register', { port: 65_536 }],
      ['register', { port: '5432' }],
      ['register', { admin_user: long(64) }],
      ['register', { admin_user: '' }],
      ['register', { admin_password: long(1025) }],
      ['register', { admin_password: '' }],
      ['register', { admin_database: long(64) }],
    ];
    for (const value of [0, -1, 10_000_001, 1.5, '5', null, true, [5], { n: 5 }]) {
      cases.push(['create', { max_instances: value }], ['register', { max_instances: value }]);
    }
    await expectNothingChanged(async () => {
      for (const [route, patch] of cases) {
        const { url, body } = BODY_ROUTES[route];
        const res = await req('POST', url, { body: { ...body(), ...patch } });
        const label = `${route} ${JSON.stringify(patch).slice(0, 80)}`;
        expectError(res, 400, label);
        expect(res.body.message, label).toContain(`body/${Object.keys(patch)[0]}`);
      }
    });
  });

  it('keeps quotes, SQL and NUL bytes in every string field inert', async () => {
    const fields: Record<RouteName, string[]> = {
      allocate: ['instance_id', 'customer_id', 'plan_tier', 'require_dedicated'],
      dedicated: ['instance_id', 'customer_id', 'plan_tier'],
      create: ['name', 'server_type', 'driver', 'allocation_strategy', 'max_instances', 'priority'],
      register: [
        'name',
        'host',
        'port',
        'admin_user',
        'admin_password',
        'admin_database',
        'server_type',
        'allocation_strategy',
        'max_instances',
      ],
    };
    await expectNothingChanged(async () => {
      for (const value of HOSTILE) {
        for (const [route, names] of entries(fields)) {
          const { url, body, late } = BODY_ROUTES[route];
          for (const field of names) {
            const res = await req('POST', url, { body: { ...body(), [field]: value } });
            const label = `${route}.${field}=${JSON.stringify(value)}`;
            // only the password is free text: it reaches the login, which fails (NUL is refused)
            const freeText = field === 'admin_password' && !CONTROL_CHARACTER.test(value);
            expectError(res, freeText ? late : 400, label);
            if (res.status === 400) expect(res.body.message, label).toContain(`body/${field}`);
          }
          // placement keys are label names (and allocate has no placement at all)
          const res = await req('POST', url, { body: { ...body(), placement: { [value]: 'x' } } });
          expectError(res, 400, `${route}.placement[${JSON.stringify(value)}]`);
          expect(res.body.message).toContain('body/');
        }
        const query = encodeURIComponent(value);
        for (const param of ['status', 'server_type', 'limit', 'offset']) {
          const res = await req('GET', `/api/database/admin/pools?${param}=${query}`);
          expectError(res, 400, `pools?${param}=${JSON.stringify(value)}`);
          expect(res.body.message).toContain(`querystring/${param}`);
        }
      }
    });
  });

  it('refuses control characters in every free-text field and numbers finer than their column', async () => {
    // Each would otherwise reach the catalog (text and jsonb cannot store NUL) or be rounded by it
    // (cpu_limit is numeric(6,2): 0.001 became 0 and failed a CHECK, 0.015 became another value).
    const hostile = [
      '\u0000',
      'eu\u0000west',
      'a\u0001b',
      'line\nbreak',
      'esc\u001b[31m',
      'del\u007f',
      'c1\u0085next',
      'csi\u009b',
      'lone\ud800surrogate',
    ];
    const cases: [route: RouteName, patch: Record<string, unknown>, message: RegExp][] = [];
    for (const value of hostile) {
      cases.push(
        ['create', { placement: { zone: value } }, /control characters|well-formed/],
        ['register', { placement: { zone: value } }, /control characters|well-formed/],
        ['register', { admin_password: `pw${value}` }, /control characters|well-formed/],
      );
    }
    for (const cpu of [0.001, 0.015, 1.005, 0.009]) {
      cases.push(['create', { cpu_limit: cpu }, /decimal places|>=0\.01|too small/i]);
    }
    await expectNothingChanged(async () => {
      for (const [route, patch, message] of cases) {
        const { url, body } = BODY_ROUTES[route];
        const res = await req('POST', url, { body: { ...body(), ...patch } });
        const label = `${route} ${JSON.stringify(patch)}`;
        expectError(res, 400, label);
        expect(res.body.message, label).toContain(`body/${Object.keys(patch)[0]}`);
        expect(res.body.message, label).toMatch(message);
        expect(res.raw, label).not.toContain('\\u0000');
      }
    });
    // what the column holds is still accepted: hundredths of a CPU, and any printable text
    const accepted = await req('POST', BODY_ROUTES.create.url, {
      body: {
        ...createBody(),
        name: 'cpu-hundredths',
        cpu_limit: 0.25,
        placement: { zone: 'zürich · 東京' },
      },
    });
    expect(accepted.status, accepted.raw).toBe(202);
    const row = await h.db
      .selectFrom('db_servers')
      .select(['cpu_limit', 'placement'])
      .where('name', '=', 'cpu-hundredths')
      .executeTakeFirstOrThrow();
    expect(Number(row.cpu_limit)).toBe(0.25);
    expect(row.placement).toEqual({ zone: 'zürich · 東京' });
    await h.db.deleteFrom('db_servers').where('name', '=', 'cpu-hundredths').execute();
  });

  it('answers 400 for a well-formed plan_tier that is not a plan, and for a shared plan on provision-dedicated', async () => {
    await expectNothingChanged(async () => {
      for (const route of ['allocate', 'dedicated'] as const) {
        for (const tier of ['platinum', 'x', 'standard-', 'free_trial']) {
          const res = await req('POST', BODY_ROUTES[route].url, {
            body: { ...BODY_ROUTES[route].body(), plan_tier: tier },
          });
          expectError(res, 400, `${route} plan_tier=${tier}`);
          expect(res.body.message).toContain('plan_tier');
        }
      }
      for (const tier of ['free', 'standard']) {
        const res = await req('POST', '/api/database/provision-dedicated', { body: newIds(tier) });
        expectError(res, 400, `provision-dedicated ${tier}`);
        expect(res.body.message).toMatch(/shared/);
      }
    });
  });

  it('answers 400 for malformed JSON without quoting it back', async () => {
    const payloads = [
      `{"instance_id": "${SQL_FRAGMENT}`,
      `{"plan_tier": '${SQL_FRAGMENT}'}`,
      `{instance_id: 1}`,
      '{"a": 1,}',
      '{"a": 1} {"b": 2}',
      '{"a": NaN}',
      "'; DROP DATABASE postgres; --",
      '\u0000',
      '{',
      ' ',
      '',
    ];
    await expectNothingChanged(async () => {
      for (const { url } of Object.values(BODY_ROUTES)) {
        for (const raw of payloads) {
          const res = await req('POST', url, { raw, headers: { 'content-type': 'application/json' } });
          expectError(res, 400, `${url} ${JSON.stringify(raw)}`);
        }
      }
    });
  });

  it('answers 413 for a body over TENANTDB_BODY_LIMIT_BYTES', async () => {
    expect(h.config.TENANTDB_BODY_LIMIT_BYTES).toBe(16_384);
    await expectNothingChanged(async () => {
      for (const { url, body } of Object.values(BODY_ROUTES)) {
        const big = JSON.stringify({ ...body(), padding: 'x'.repeat(20_000) });
        expect(big.length).toBeGreaterThan(16_384);
        const res = await req('POST', url, { raw: big, headers: { 'content-type': 'application/json' } });
        expectError(res, 413, `${url} ${big.length} bytes`);
      }
      // just over the limit is over the limit; the size is checked before the JSON is parsed
      const res = await req('POST', '/api/database/allocate', {
        raw: `"${'x'.repeat(16_384)}"`,
        headers: { 'content-type': 'application/json' },
      });
      expectError(res, 413, 'allocate 16386 bytes');
    });
  });

  it('answers 415 for bodies that are not JSON', async () => {
    await expectNothingChanged(async () => {
      for (const { url, body } of Object.values(BODY_ROUTES)) {
        const json = JSON.stringify(body());
        for (const type of [
          'text/plain',
          'application/x-www-form-urlencoded',
          'multipart/form-data; boundary=x',
          'application/xml',
          'application/jsonx',
          'text/json',
        ]) {
          const res = await req('POST', url, { raw: json, headers: { 'content-type': type } });
          expectError(res, 415, `${url} as ${type}`);
        }
        // a body with no content-type at all
        expectError(await req('POST', url, { raw: json }), 415, `${url} without content-type`);
      }
    });
  });
});

describe('auth', () => {
  const someId = crypto.randomUUID();
  const allocateRoutes = () =>
    [
      ['POST', '/api/database/allocate', allocateBody()],
      ['POST', '/api/database/provision-dedicated', dedicatedBody()],
      ['GET', `/api/database/allocations/${someId}`, undefined],
      ['DELETE', `/api/database/allocations/${someId}`, undefined],
      ['POST', `/api/database/allocations/${someId}/rotate-credentials`, undefined],
      ['GET', `/api/database/allocations/${someId}/credentials`, undefined],
    ] as const;
  /** Admin routes with requests that WOULD change things if the token were good enough. */
  const adminRoutes = () =>
    [
      ['GET', '/api/database/admin/pools', undefined],
      ['GET', `/api/database/admin/pools/${poolId}`, undefined],
      ['POST', '/api/database/admin/pools', createBody()],
      ['POST', '/api/database/admin/pools/register', { ...registerBody(), admin_password: spare.password }],
      ['POST', `/api/database/admin/pools/${poolId}/health-check`, undefined],
      ['GET', '/api/database/admin/stats', undefined],
    ] as const;

  it('answers 401 with WWW-Authenticate for a missing token on every scoped route, before reading the body', async () => {
    await expectNothingChanged(async () => {
      for (const [method, url, body] of [...allocateRoutes(), ...adminRoutes()]) {
        const res = await req(method, url, { body, token: null });
        expectError(res, 401, `${method} ${url}`);
        expect(res.headers['www-authenticate']).toBe('Bearer');
        // an unauthenticated request is turned away before its body is validated
        if (method === 'POST') {
          const bad = await req(method, url, { body: { junk: SQL_FRAGMENT }, token: null });
          expectError(bad, 401, `${method} ${url} junk`);
        }
      }
      // every /api route the OpenAPI document lists needs a token (no route is public by accident)
      const doc = (await req('GET', '/openapi.json', { token: null })).body;
      const paths = Object.entries(doc.paths as Record<string, Record<string, unknown>>).filter(([p]) =>
        p.startsWith('/api/'),
      );
      expect(paths.length).toBeGreaterThanOrEqual(8);
      for (const [path, methods] of paths) {
        for (const method of Object.keys(methods)) {
          const url = path.replace(/\{[^}]+\}/g, someId);
          expectError(await req(method.toUpperCase(), url, { token: null }), 401, `${method} ${path}`);
        }
      }
    });
  });

  it('answers 401 for unknown and malformed tokens', async () => {
    const presented = [
      'Bearer nope',
      `Bearer ${h.adminToken.slice(0, -1)}`,
      `Bearer ${h.adminToken}x`,
      `Bearer ${h.allocateToken.toUpperCase()}`,
      'Bearer ',
      'Bearer',
      h.adminToken,
      `Basic ${Buffer.from(`admin:${h.adminToken}`).toString('base64')}`,
      `Token ${h.adminToken}`,
      `Bearer ${SQL_FRAGMENT}`,
    ];
    await expectNothingChanged(async () => {
      for (const authorization of presented) {
        for (const [method, url, body] of [...allocateRoutes(), ...adminRoutes()]) {
          const res = await req(method, url, { body, token: null, headers: { authorization } });
          expectError(res, 401, `${method} ${url} with "${authorization.slice(0, 20)}"`);
          expect(res.raw).not.toContain(h.adminToken);
        }
      }
    });
  });

  it('answers 403 for the allocate token on every admin route, even with valid bodies', async () => {
    await expectNothingChanged(async () => {
      for (const [method, url, body] of adminRoutes()) {
        const res = await req(method, url, { body, token: h.allocateToken });
        expectError(res, 403, `${method} ${url}`);
        expect(res.body.message).toContain('admin');
      }
    });
  });

  it('lets the admin token use the allocate routes', async () => {
    const ids = allocateBody();
    const res = await req('POST', '/api/database/allocate', {
      body: ids,
      headers: { 'content-type': 'application/json; charset=utf-8' },
    });
    expect(res.status, res.raw).toBe(200);
    expect(res.body).toMatchObject({ status: 'allocated', db_server_id: poolId });
    h.remember(res.body.db_password);
    const audit = await h.db
      .selectFrom('audit_events')
      .select(['actor', 'action'])
      .where('instance_id', '=', ids.instance_id)
      .execute();
    expect(audit).toEqual([{ actor: 'admin', action: 'allocation.reserve' }]);
    const got = await req('GET', `/api/database/allocations/${ids.instance_id}`);
    expect(got.status).toBe(200);
    expect(got.body.status).toBe('ready');
    const released = await req('DELETE', `/api/database/allocations/${ids.instance_id}`);
    expect(released.status).toBe(200);
  });
});

describe('routing and request ids', () => {
  it('answers 404 in the error shape for unknown routes, with or without a token', async () => {
    await expectNothingChanged(async () => {
      for (const [method, url] of [
        ['GET', '/'],
        ['GET', '/api/database'],
        ['GET', '/api/database/nope'],
        ['POST', '/api/database/allocate/extra'],
        ['PUT', '/api/database/allocate'],
        ['POST', `/api/database/admin/pools/${crypto.randomUUID()}/explode`],
        ['GET', `/api/database/${encodeURIComponent(SQL_FRAGMENT)}`],
      ] as const) {
        for (const token of [null, h.adminToken]) {
          const res = await req(method, url, { token });
          expectError(res, 404, `${method} ${url}`);
        }
      }
    });
    // a well-formed id that names nothing
    const missing = await req('GET', `/api/database/admin/pools/${crypto.randomUUID()}`);
    expectError(missing, 404, 'pool detail');
    const missingCheck = await req('POST', `/api/database/admin/pools/${crypto.randomUUID()}/health-check`);
    expectError(missingCheck, 404, 'health-check');
  });

  it('echoes a given x-request-id in the header and in error bodies, and makes one up otherwise', async () => {
    const ok = await req('GET', '/api/database/admin/stats', { headers: { 'x-request-id': 'abc-123' } });
    expect(ok.status).toBe(200);
    expect(ok.headers['x-request-id']).toBe('abc-123');

    const bad = await req('POST', '/api/database/allocate', {
      body: { ...allocateBody(), instance_id: 'nope' },
      headers: { 'x-request-id': 'abc-123' },
    });
    expectError(bad, 400);
    expect(bad.body.requestId).toBe('abc-123');
    expect(bad.headers['x-request-id']).toBe('abc-123');

    const unauthorized = await req('GET', '/api/database/admin/stats', {
      token: null,
      headers: { 'x-request-id': 'abc-123' },
    });
    expectError(unauthorized, 401);
    expect(unauthorized.body.requestId).toBe('abc-123');

    // ids that could break a log line or a header are replaced, not echoed
    for (const given of ['has space', 'x'.repeat(65), SQL_FRAGMENT, '']) {
      const res = await req('GET', '/nope', { headers: { 'x-request-id': given } });
      expectError(res, 404);
      expect(res.body.requestId).not.toBe(given);
      expect(res.body.requestId).toMatch(/^[0-9a-f-]{36}$/);
    }
    const a = await req('GET', '/nope');
    const b = await req('GET', '/nope');
    expect(a.body.requestId).not.toBe(b.body.requestId);
  });
});

// Last of the single-pool tests: it adds a pool, which the snapshots above do not expect.
describe('free text is stored as data', () => {
  it('keeps a hostile placement value verbatim and runs none of it', async () => {
    const before = await snapshot();
    const placement = { zone: SQL_FRAGMENT, note: '"$$\\' };
    const res = await req('POST', '/api/database/admin/pools', {
      body: { name: 'placed-pool', max_instances: 3, placement },
    });
    expect(res.status, res.raw).toBe(202);
    const detail = await req('GET', `/api/database/admin/pools/${res.body.pool.id}`);
    expect(detail.body.placement).toEqual(placement);
    const after = await snapshot();
    expect(after.counts).toEqual({
      ...before.counts,
      db_servers: 2,
      audit_events: before.counts.audit_events + 1,
    });
    expect(after.pool).toEqual(before.pool);
    expect(after.spare).toEqual(before.spare);
    expect(after.jobs.waiting).toBe(before.jobs.waiting! + 1);
  });
});

describe('rate limit', () => {
  let limited: Harness;
  beforeAll(async () => {
    limited = await startHarness({
      env: {
        TENANTDB_RATE_LIMIT_PER_MINUTE: '5',
        TENANTDB_AUTH_FAILURES_PER_MINUTE: '4',
        // The counter's deadline is a timer in this (test) process: a loaded CI host that stalls
        // the event loop past the 500 ms default let the 6th request through, failing open.
        TENANTDB_RATE_LIMIT_REDIS_TIMEOUT_MS: '10000',
      },
    });
  });
  afterAll(async () => {
    await limited?.close();
  });

  it('answers 429 with Retry-After to the 6th request of one token while another token still passes', async () => {
    const url = `/api/database/allocations/${crypto.randomUUID()}`;
    for (let i = 0; i < 5; i++) {
      const res = await send(limited, 'GET', url, { token: limited.allocateToken });
      expect(res.status, `request ${i + 1}`).toBe(404);
    }
    const sixth = await send(limited, 'GET', url, {
      token: limited.allocateToken,
      headers: { 'x-request-id': 'rate-6' },
    });
    expectError(sixth, 429, '6th request');
    expect(sixth.body.requestId).toBe('rate-6');
    const retryAfter = Number(sixth.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // still limited: a different route, the same token
    const other = await send(limited, 'POST', '/api/database/allocate', {
      token: limited.allocateToken,
      body: newIds(),
    });
    expectError(other, 429, 'allocate while limited');

    // the admin token has its own budget
    const admin = await send(limited, 'GET', '/api/database/admin/stats', { token: limited.adminToken });
    expect(admin.status, admin.raw).toBe(200);
    // probes are not rate limited
    for (let i = 0; i < 10; i++)
      expect((await send(limited, 'GET', '/healthz', { token: null })).status).toBe(200);
    expect((await send(limited, 'GET', '/readyz', { token: null })).status).toBe(200);
    // the counters are in Redis (every replica sees them), under the queue prefix
    const keys = await limited.queues.connection.keys(`${limited.config.TENANTDB_QUEUE_PREFIX}:rate-limit:*`);
    expect(keys.length).toBeGreaterThan(0);
  });

  it('answers 429 to a wrong-token flood from one address after TENANTDB_AUTH_FAILURES_PER_MINUTE, and only to that address', async () => {
    const from = (remoteAddress: string, token: string) =>
      limited.app.inject({
        method: 'GET',
        url: '/api/database/admin/stats',
        remoteAddress,
        headers: { authorization: `Bearer ${token}` },
      });
    for (let i = 0; i < 4; i++) expect((await from('192.0.2.10', `guess-${i}`)).statusCode).toBe(401);
    const flooded = await from('192.0.2.10', 'guess-5');
    expect(flooded.statusCode).toBe(429);
    expect(flooded.json()).toMatchObject({ statusCode: 429, error: 'Too Many Requests' });
    expect(Number(flooded.headers['retry-after'])).toBeGreaterThan(0);
    // the address is refused before its token is looked at, even a right one
    expect((await from('192.0.2.10', limited.adminToken)).statusCode).toBe(429);
    expect((await from('192.0.2.11', limited.adminToken)).statusCode).toBe(200);
  });
});

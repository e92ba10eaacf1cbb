// Bad input to every instance-service route gets a 4xx in the one error shape
// {statusCode, error, message, requestId} and changes nothing: no instance row, no audit event,
// no job, no allocation in database-service. Another customer's instance id is 404 on every route.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, newInstance, startHarness } from './harness';

let h: Harness;
/** A ready instance of customer A, and customer B who must not see it. */
let mine: { id: string; customer_id: string };
const otherCustomer = crypto.randomUUID();

beforeAll(async () => {
  h = await startHarness();
  const body = newInstance();
  const created = await h.api('POST', '/api/v1/instances', { body });
  await h.waitForStatus(created.body.id, body.customer_id, ['ready']);
  mine = { id: created.body.id, customer_id: body.customer_id };
});
afterAll(async () => {
  await h?.close();
});

/** Everything a request could have changed. */
async function snapshot() {
  const [instances, audit, allocations, jobs] = await Promise.all([
    h.deps.db.selectFrom('instances').selectAll().orderBy('id').execute(),
    h.deps.db.selectFrom('audit_events').select('id').execute(),
    h.catalogDb.selectFrom('tenant_databases').select(['id', 'status']).orderBy('id').execute(),
    h.queuedJobs(),
  ]);
  return JSON.stringify({ instances, audit: audit.length, allocations, jobs });
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
};
const STACK = /\n\s*at |\.[cm]?[jt]s:\d+|node_modules|\/work\/|\/src\//;

interface Case {
  name: string;
  method: 'GET' | 'POST' | 'DELETE';
  url: () => string;
  body?: unknown;
  raw?: string;
  headers?: Record<string, string>;
  token?: string | null;
  status: number;
  message?: RegExp;
}

const valid = () => newInstance();
const long = (n: number) => 'x'.repeat(n);

const cases: Case[] = [
  // POST /api/v1/instances
  { name: 'create: no body', method: 'POST', url: () => '/api/v1/instances', status: 400 },
  {
    name: 'create: empty object',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: {},
    status: 400,
    message: /customer_id/,
  },
  {
    name: 'create: customer_id not a uuid',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: { ...valid(), customer_id: 'abc' },
    status: 400,
    message: /customer_id/,
  },
  {
    name: 'create: unknown field',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: { ...valid(), db_name: 'mine' },
    status: 400,
    message: /unknown field "db_name"/,
  },
  {
    name: 'create: unknown field with a hostile name',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: { ...valid(), "x'; DROP TABLE instances; --": 1 },
    status: 400,
    message: /<invalid name>/,
  },
  {
    name: 'create: empty name',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: { ...valid(), name: '' },
    status: 400,
    message: /name/,
  },
  {
    name: 'create: name too long',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: { ...valid(), name: long(101) },
    status: 400,
    message: /name/,
  },
  {
    name: 'create: name with a control character',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: { ...valid(), name: 'a\u0000b' },
    status: 400,
    message: /name/,
  },
  // Every free-text field refuses control characters; a name also refuses characters that
  // reorder or hide text (a bidi override makes "evil‮gpj.exe" read as "evilexe.jpg").
  ...(
    [
      ['DEL', 'a\u007fb'],
      ['a C1 control (NEL)', 'a\u0085b'],
      ['a C1 control (CSI)', 'a\u009b31m'],
      ['a newline', 'first\nsecond'],
      ['an escape sequence', 'a\u001b[2Jb'],
      ['a lone surrogate', 'a\ud800b'],
      ['a right-to-left override', 'evil\u202egpj.exe'],
      ['a bidi isolate', 'a\u2066b\u2069'],
      ['a zero-width space', 'ad\u200bmin'],
      ['a zero-width joiner alone', 'a\u200db'],
      ['a byte-order mark', '\ufeffname'],
    ] as const
  ).map(
    ([what, name]): Case => ({
      name: `create: name with ${what}`,
      method: 'POST',
      url: () => '/api/v1/instances',
      body: { ...valid(), name },
      status: 400,
      message: /body\/name: must not contain|body\/name: must be well-formed/,
    }),
  ),
  ...(
    [
      ['NUL', 'https://example.com/hook\u0000'],
      ['a tab', 'https://example.com/ho\tok'],
      ['a newline', 'https://example.com/hook\nX-Injected: 1'],
      ['DEL', 'https://example.com/\u007f'],
      ['a C1 control', 'https://example.com/\u0085'],
    ] as const
  ).map(
    ([what, callback_url]): Case => ({
      name: `create: callback_url with ${what}`,
      method: 'POST',
      url: () => '/api/v1/instances',
      body: { ...valid(), callback_url },
      status: 400,
      message: /body\/callback_url: must not contain control characters/,
    }),
  ),
  {
    name: 'create: plan_tier not a plan name',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: { ...valid(), plan_tier: 'Premium Plan' },
    status: 400,
    message: /plan_tier/,
  },
  {
    name: 'create: plan_tier a number',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: { ...valid(), plan_tier: 3 },
    status: 400,
    message: /plan_tier/,
  },
  {
    name: 'create: callback_url not http',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: { ...valid(), callback_url: 'file:///etc/passwd' },
    status: 400,
    message: /callback_url/,
  },
  {
    name: 'create: callback_url with a password',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: { ...valid(), callback_url: 'https://u:p@example.com/x' },
    status: 400,
    message: /callback_url/,
  },
  {
    name: 'create: callback_url too long',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: { ...valid(), callback_url: `https://example.com/${long(2100)}` },
    status: 400,
    message: /callback_url/,
  },
  {
    name: 'create: callback_url not a URL',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: { ...valid(), callback_url: 'hooks' },
    status: 400,
    message: /callback_url/,
  },
  {
    name: 'create: Idempotency-Key too long',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: valid(),
    headers: { 'idempotency-key': long(256) },
    status: 400,
    message: /idempotency-key/,
  },
  {
    name: 'create: Idempotency-Key with a space',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: valid(),
    headers: { 'idempotency-key': 'a b' },
    status: 400,
    message: /idempotency-key/,
  },
  {
    name: 'create: malformed JSON',
    method: 'POST',
    url: () => '/api/v1/instances',
    raw: '{"customer_id": ',
    headers: { 'content-type': 'application/json' },
    status: 400,
  },
  {
    name: 'create: a JSON array',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: [valid()],
    status: 400,
  },
  {
    name: 'create: text/plain',
    method: 'POST',
    url: () => '/api/v1/instances',
    raw: 'name=x',
    headers: { 'content-type': 'text/plain' },
    status: 415,
  },
  {
    name: 'create: body over the limit',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: { ...valid(), name: long(20_000) },
    status: 413,
  },
  {
    name: 'create: no token',
    method: 'POST',
    url: () => '/api/v1/instances',
    body: valid(),
    token: null,
    status: 401,
  },
  {
    name: "create: database-service's token",
    method: 'POST',
    url: () => '/api/v1/instances',
    body: valid(),
    token: 'ALLOCATE',
    status: 401,
  },
  // GET /api/v1/instances
  {
    name: 'list: no customer_id',
    method: 'GET',
    url: () => '/api/v1/instances',
    status: 400,
    message: /customer_id/,
  },
  {
    name: 'list: customer_id not a uuid',
    method: 'GET',
    url: () => '/api/v1/instances?customer_id=1',
    status: 400,
    message: /customer_id/,
  },
  {
    name: 'list: limit 0',
    method: 'GET',
    url: () => `/api/v1/instances?customer_id=${mine.customer_id}&limit=0`,
    status: 400,
    message: /limit/,
  },
  {
    name: 'list: limit over 200',
    method: 'GET',
    url: () => `/api/v1/instances?customer_id=${mine.customer_id}&limit=201`,
    status: 400,
    message: /limit/,
  },
  {
    name: 'list: negative offset',
    method: 'GET',
    url: () => `/api/v1/instances?customer_id=${mine.customer_id}&offset=-1`,
    status: 400,
    message: /offset/,
  },
  {
    name: 'list: unknown status',
    method: 'GET',
    url: () => `/api/v1/instances?customer_id=${mine.customer_id}&status=gone`,
    status: 400,
    message: /status/,
  },
  {
    name: 'list: unknown parameter',
    method: 'GET',
    url: () => `/api/v1/instances?customer_id=${mine.customer_id}&sort=name`,
    status: 400,
    message: /unknown field "sort"/,
  },
  {
    name: 'list: no token',
    method: 'GET',
    url: () => `/api/v1/instances?customer_id=${mine.customer_id}`,
    token: null,
    status: 401,
  },
  // GET, DELETE, POST credentials on /api/v1/instances/{id}
  ...(['GET', 'DELETE', 'POST'] as const).flatMap((method): Case[] => {
    const suffix = method === 'POST' ? '/credentials' : '';
    const url = (id: string, query: string) => `/api/v1/instances/${id}${suffix}${query}`;
    const label = `${method} ${suffix || '/{id}'}`;
    return [
      {
        name: `${label}: id not a uuid`,
        method,
        url: () => url('42', `?customer_id=${mine.customer_id}`),
        status: 400,
        message: /id/,
      },
      {
        name: `${label}: hostile id`,
        method,
        url: () => url("1'%3B%20DROP%20TABLE%20instances%3B--", `?customer_id=${mine.customer_id}`),
        status: 400,
      },
      {
        name: `${label}: no customer_id`,
        method,
        url: () => url(mine.id, ''),
        status: 400,
        message: /customer_id/,
      },
      {
        name: `${label}: customer_id not a uuid`,
        method,
        url: () => url(mine.id, '?customer_id=me'),
        status: 400,
        message: /customer_id/,
      },
      {
        name: `${label}: unknown parameter`,
        method,
        url: () => url(mine.id, `?customer_id=${mine.customer_id}&force=true`),
        status: 400,
        message: /unknown field "force"/,
      },
      {
        name: `${label}: another customer's instance`,
        method,
        url: () => url(mine.id, `?customer_id=${otherCustomer}`),
        status: 404,
        message: /no such instance/,
      },
      {
        name: `${label}: an id that does not exist`,
        method,
        url: () => url(crypto.randomUUID(), `?customer_id=${mine.customer_id}`),
        status: 404,
        message: /no such instance/,
      },
      {
        name: `${label}: no token`,
        method,
        url: () => url(mine.id, `?customer_id=${mine.customer_id}`),
        token: null,
        status: 401,
      },
    ];
  }),
  { name: 'an unknown route', method: 'GET', url: () => '/api/v1/instance', status: 404 },
  { name: 'DELETE without an id', method: 'DELETE', url: () => '/api/v1/instances', status: 404 },
];

describe('bad input changes nothing', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const before = await snapshot();
    const token = c.token === 'ALLOCATE' ? h.allocateToken : c.token === undefined ? h.portalToken : c.token;
    const response = await h.app.inject({
      method: c.method,
      url: c.url(),
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(c.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...c.headers,
      },
      ...(c.body !== undefined
        ? { payload: JSON.stringify(c.body) }
        : c.raw !== undefined
          ? { payload: c.raw }
          : {}),
    });
    expect(response.statusCode, response.body).toBe(c.status);
    const body = response.json();
    expect(Object.keys(body).sort()).toEqual(['error', 'message', 'requestId', 'statusCode']);
    expect(body).toMatchObject({
      statusCode: c.status,
      error: REASONS[c.status],
      requestId: response.headers['x-request-id'],
    });
    if (c.message) expect(body.message).toMatch(c.message);
    expect(response.body).not.toMatch(STACK);
    expect(response.body).not.toMatch(/DROP TABLE/);
    expect(await snapshot()).toBe(before);
  });

  it('accepts names in any script, with emoji and the joiners they are written with', async () => {
    for (const name of [
      'Café Zürich',
      '東京の店',
      'متجر',
      'می\u200cخواهم',
      'dev 👩\u200d💻 team',
      'ölçü—“x”',
    ]) {
      const res = await h.api('POST', '/api/v1/instances', { body: { ...valid(), name } });
      expect(res.status, `${JSON.stringify(name)}: ${JSON.stringify(res.body)}`).toBe(202);
      expect(res.body.name).toBe(name);
    }
  });

  it("the instance is untouched and still the customer's own afterwards", async () => {
    const res = await h.api('GET', `/api/v1/instances/${mine.id}?customer_id=${mine.customer_id}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: mine.id, status: 'ready' });
    const list = await h.api('GET', `/api/v1/instances?customer_id=${otherCustomer}`);
    expect(list.body).toMatchObject({ instances: [], total_count: 0 });
  });
});

// Values the catalog would refuse (a CHECK, a character jsonb does not store) are the caller's
// error: 400 in the one error shape, nothing created or queued, no error logged, and the
// database's own message (which repeats the value) never reaches the caller. Validation refuses
// these two now (validation.test.ts has the full table); the catalog's refusal of anything that
// still slips through is a 400 too (packages/http/src/errors.test.ts).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Harness, startHarness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h?.close());

const servers = async () =>
  Number(
    (
      await h.db
        .selectFrom('db_servers')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );

it.each([
  ['a cpu_limit that rounds to 0 at the column precision', { cpu_limit: 0.001 }],
  ['a NUL character in a placement value', { placement: { zone: 'eu\u0000west' } }],
])('%s: 400, no server created, no job queued', async (_what, extra) => {
  const before = await servers();
  const jobsBefore = await h.queues.queue('provisioning').count();
  const res = await h.api('POST', '/api/database/admin/pools', { max_instances: 5, ...extra }, h.adminToken);
  expect(res.status).toBe(400);
  expect(res.body).toMatchObject({ statusCode: 400, error: 'Bad Request', requestId: expect.any(String) });
  expect(res.body.message).not.toMatch(/constraint|violates|\\u0000|unicode/i);
  expect(await servers()).toBe(before);
  expect(await h.queues.queue('provisioning').count()).toBe(jobsBefore);
  expect(h.errorLogs()).toEqual([]);
});

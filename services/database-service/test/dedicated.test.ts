// Dedicated placement: the server row is created once per instance and its provisioning job
// enqueued; once the server is active the tenant database is created there.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canLogin, type Harness, newIds, startHarness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ pools: [10] });
});
afterAll(async () => {
  await h?.close();
});

const dedicatedRows = (instanceId: string) =>
  h.db.selectFrom('db_servers').selectAll().where('dedicated_to_instance_id', '=', instanceId).execute();

describe('dedicated servers', () => {
  it('answers 202 with one server row and one provisioning job however often it is asked', async () => {
    const ids = newIds('premium');
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => h.api('POST', '/api/database/provision-dedicated', ids)),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(5).fill(202));
    const serverIds = new Set(answers.map((a) => a.body.db_server_id));
    expect(serverIds.size).toBe(1);
    const rows = await dedicatedRows(ids.instance_id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      server_type: 'dedicated',
      status: 'provisioning',
      max_instances: 1,
      dedicated_to_customer_id: ids.customer_id,
      memory_limit_mb: 4096,
    });
    const jobs = await h.queues.queue('provisioning').getJobs(['waiting', 'delayed', 'active']);
    const mine = jobs.filter((j) => j.name === 'provision-server' && j.data.server_id === rows[0]!.id);
    expect(mine).toHaveLength(1);
    expect(JSON.stringify(mine[0]!.data)).toBe(JSON.stringify({ server_id: rows[0]!.id }));

    // allocate for the same instance goes the same way
    const viaAllocate = await h.api('POST', '/api/database/allocate', ids);
    expect(viaAllocate.status).toBe(202);
    expect(viaAllocate.body.db_server_id).toBe(rows[0]!.id);
  });

  it('rejects provision-dedicated for a plan placed on shared pools', async () => {
    const res = await h.api('POST', '/api/database/provision-dedicated', newIds('starter'));
    expect(res.status).toBe(400);
    expect(
      await h.db.selectFrom('db_servers').select('id').where('server_type', '=', 'dedicated').execute(),
    ).toHaveLength(1);
  });

  it('require_dedicated places a shared plan on its own server', async () => {
    const ids = newIds('standard');
    const res = await h.api('POST', '/api/database/allocate', { ...ids, require_dedicated: true });
    expect(res.status).toBe(202);
    expect(await dedicatedRows(ids.instance_id)).toHaveLength(1);
  });

  it('once the server is active, answers 200 with working credentials on that server', async () => {
    const ids = newIds('enterprise');
    const first = await h.api('POST', '/api/database/provision-dedicated', ids);
    expect(first.status).toBe(202);
    // Stand in for the worker (next issue): the server came up at the address of a real Postgres.
    const target = await h.addPoolServer(1, 'ded-stand-in');
    const standIn = await h.db
      .selectFrom('db_servers')
      .selectAll()
      .where('id', '=', target.id)
      .executeTakeFirstOrThrow();
    await h.db.deleteFrom('db_servers').where('id', '=', target.id).execute();
    await h.db
      .updateTable('db_servers')
      .set({
        status: 'active',
        host: standIn.host,
        port: standIn.port,
        admin_user: standIn.admin_user,
        // encrypted for this row: a ciphertext is bound to the row that holds it
        admin_password_enc: h.secrets.encrypt(
          h.secrets.decrypt(standIn.admin_password_enc!, standIn.id),
          first.body.db_server_id,
        ),
        provisioned_at: new Date(),
      })
      .where('id', '=', first.body.db_server_id)
      .execute();

    const done = await h.api('POST', '/api/database/provision-dedicated', ids);
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({
      status: 'provisioned',
      db_server_id: first.body.db_server_id,
      db_port: target.port,
    });
    expect(await canLogin(done.body)).toBe(true);

    // A repeat is the same answer, not a second database (it was a 500: the existing allocation's
    // "allocated" overwrote "provisioned").
    const again = await h.api('POST', '/api/database/provision-dedicated', ids);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ status: 'provisioned', db_password: done.body.db_password });

    const viaAllocate = await h.api('POST', '/api/database/allocate', ids);
    expect(viaAllocate.status).toBe(200);
    expect(viaAllocate.body).toMatchObject({ status: 'allocated', db_password: done.body.db_password });
    const server = (await dedicatedRows(ids.instance_id))[0]!;
    expect(server).toMatchObject({ current_instances: 1, status: 'full' });
  });
});

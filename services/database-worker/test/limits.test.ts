// The worker's side of the limits on what callers can make (issue 14): the capacity planner
// respects the fleet ceiling and the bound on servers starting at once (skips and logs); a
// dedicated server is retired once its tenant was released (after the cleanup's grace); a failed
// dedicated provision can be retried cleanly once cleanup removed the failed server.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NewDbServer } from '@tenantdb/catalog';
import { afterEach, describe, expect, it } from 'vitest';
import { canLogin, type Fleet, newIds, startFleet, waitFor } from './harness';

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
});

/** A dedicated server row no job will ever provision: it only takes a place in the fleet. */
const dedicatedRow = (i: number, status: NewDbServer['status']): NewDbServer => ({
  name: `ded-row-${i}`,
  driver: 'kubernetes',
  server_type: 'dedicated',
  dedicated_to_instance_id: crypto.randomUUID(),
  dedicated_to_customer_id: crypto.randomUUID(),
  max_instances: 1,
  status,
});

describe('the capacity planner and the fleet limits', () => {
  it('provisions no pool while the provisioning bound or the ceiling leaves no room, and says so in its log', async () => {
    fleet = await startFleet({
      replicas: 1,
      env: { TENANTDB_MAX_STARTING_SERVERS: '2', TENANTDB_MAX_SERVERS: '3' },
    });
    const f = fleet;
    const shared = async () => (await f.servers()).filter((s) => s.server_type === 'shared');
    const skips = () => f.logs.lines.filter((l) => l.includes('provisioning bound reached')).length;
    const plan = async (expectedSkips: number) => {
      await f.queues.enqueue('grow-shared-capacity', { reason: 'test' });
      await waitFor(async () => skips() >= expectedSkips, 30_000, 'the planner to skip');
    };

    // Two servers starting: the bound of 2 is reached.
    await f.db
      .insertInto('db_servers')
      .values([dedicatedRow(1, 'provisioning'), dedicatedRow(2, 'initializing')])
      .execute();
    await plan(1);
    expect(await shared()).toHaveLength(0);

    // They came up: three servers, the ceiling of 3 would be passed by one more.
    await f.db.updateTable('db_servers').set({ status: 'active' }).execute();
    await f.db.insertInto('db_servers').values(dedicatedRow(3, 'active')).execute();
    await plan(2);
    expect(await shared()).toHaveLength(0);

    // One retired: room for the pool the headroom asks for.
    await f.db
      .updateTable('db_servers')
      .set({ status: 'decommissioned' })
      .where('name', '=', 'ded-row-3')
      .execute();
    await f.queues.enqueue('grow-shared-capacity', { reason: 'test' });
    await waitFor(async () => (await shared()).length === 1, 30_000, 'the planner to provision one pool');
    expect(skips()).toBe(2);
  });
});

describe('dedicated servers over their life', () => {
  it('a failed dedicated provision, once cleanup removed the failed server, is retried on a new server', {
    timeout: 180_000,
  }, async () => {
    fleet = await startFleet({ replicas: 1 });
    const f = fleet;
    const ids = newIds('premium');
    // The first server's directory is taken by something not tenantdb's: its provision fails.
    const clash = join(f.root, `ded-${ids.instance_id.replaceAll('-', '').slice(0, 20)}`);
    await mkdir(clash);
    await writeFile(join(clash, 'precious.txt'), 'not tenantdb data');
    const first = await f.api('POST', '/api/database/provision-dedicated', ids);
    expect(first.status).toBe(202);
    const failedId = first.body.db_server_id as string;
    await f.waitForServer((servers) => servers.find((s) => s.id === failedId)?.status === 'error');
    expect((await f.api('POST', '/api/database/allocate', ids)).status).toBe(503);

    await f.queues.enqueue('cleanup-failed-servers', {});
    await f.waitForServer((servers) => servers.find((s) => s.id === failedId)?.status === 'decommissioned');

    const allocated = await f.allocateUntilReady(ids, 90_000);
    expect(allocated.body.db_server_id).not.toBe(failedId);
    expect(await canLogin(allocated.body)).toBe(true);
    const mine = (await f.servers()).filter((s) => s.dedicated_to_instance_id === ids.instance_id);
    expect(mine.map((s) => s.status).sort()).toEqual(['decommissioned', 'full']);
  });

  it('a released dedicated server is retired by the cleanup once the grace has passed', {
    timeout: 180_000,
  }, async () => {
    const graceMs = 4_000;
    fleet = await startFleet({ replicas: 1, env: { TENANTDB_CLEANUP_INTERVAL_MS: String(graceMs) } });
    const f = fleet;
    const ids = newIds('premium');
    const allocated = await f.allocateUntilReady(ids, 90_000);
    const serverId = allocated.body.db_server_id as string;
    expect((await f.local.list()).map((o) => o.serverId)).toContain(serverId);

    expect((await f.api('DELETE', `/api/database/allocations/${ids.instance_id}`)).status).toBe(200);
    const releasedAt = Date.now();
    await f.waitForServer(
      (servers) => servers.find((s) => s.id === serverId)?.status === 'decommissioned',
      60_000,
    );
    const event = await f.db
      .selectFrom('audit_events')
      .select('occurred_at')
      .where('action', '=', 'server.retire_dedicated')
      .where('db_server_id', '=', serverId)
      .executeTakeFirstOrThrow();
    // Not before the grace: the release is at least one cleanup interval old when it goes.
    expect(event.occurred_at.getTime()).toBeGreaterThanOrEqual(releasedAt + graceMs - 1_000);
    expect((await f.local.list()).map((o) => o.serverId)).not.toContain(serverId);

    // The instance may come back: it gets a server of its own again.
    const again = await f.allocateUntilReady(ids, 90_000);
    expect(again.body.db_server_id).not.toBe(serverId);
    expect(await canLogin(again.body)).toBe(true);
  });
});

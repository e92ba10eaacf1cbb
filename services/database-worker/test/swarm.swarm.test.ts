// The whole flow on a real Docker Swarm (`pnpm test:swarm`, after `.ci/swarm-sandbox.sh up`):
// database-service and database-worker replicas with TENANTDB_DRIVERS=swarm provision pool servers
// as swarm services, allocate on them, health-check, decommission, fail cleanly, reconcile and
// survive a worker killed mid-provision. Servers publish in host mode; everything is reached on
// 127.0.0.1 through published ports.
import { randomUUID } from 'node:crypto';
import { createTlsRepo, type DbServer } from '@tenantdb/catalog';
import { maxConnectionsFor, type SwarmProvisioner } from '@tenantdb/provisioners';
import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { asAdmin, canLogin, type Fleet, newIds, orphanServerRequest, startFleet, waitFor } from './harness';

const skip = inject('swarmSkipReason');
if (skip && inject('swarmRequired')) {
  it('runs on a swarm (CI=true: never skipped)', () => {
    throw new Error(`no swarm to run on: ${skip}`);
  });
}

const swarmEnv = (extra: Record<string, string> = {}) => ({
  TENANTDB_DRIVERS: 'swarm',
  TENANTDB_SWARM_DOCKER_HOST: inject('dockerUrl'),
  TENANTDB_SWARM_IMAGE: inject('swarmImage'),
  TENANTDB_SWARM_PUBLISH_MODE: 'host',
  TENANTDB_SWARM_CONNECT_HOST: '127.0.0.1',
  TENANTDB_SWARM_PORT_RANGE: '26432-27431',
  TENANTDB_SWARM_RESTART_DELAY_MS: '1000',
  TENANTDB_SWARM_START_TIMEOUT_MS: '60000',
  TENANTDB_SWARM_MEMORY_LIMIT_MB: '1024',
  TENANTDB_POOL_MAX_INSTANCES: '10',
  // The sandbox image runs Postgres as uid 999, as Debian-based images do.
  TENANTDB_SWARM_POSTGRES_UID: '999',
  ...extra,
});

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
});

type Docker = SwarmProvisioner['docker'];

function swarmOf(f: Fleet): { driver: SwarmProvisioner; docker: Docker } {
  const driver = f.drivers.get('swarm') as SwarmProvisioner;
  return { driver, docker: driver.docker };
}

async function servicesOf(f: Fleet, serverId: string) {
  return swarmOf(f).docker.listServices({ filters: { label: [`tenantdb.server-id=${serverId}`] } });
}

async function secretsOf(f: Fleet, serverId: string) {
  return swarmOf(f).docker.listSecrets({ filters: { label: [`tenantdb.server-id=${serverId}`] } });
}

async function provisionRow(f: Fleet, name: string): Promise<string> {
  const row = await f.db
    .insertInto('db_servers')
    .values({ name, driver: 'swarm', server_type: 'shared', max_instances: 10, status: 'provisioning' })
    .returning('id')
    .executeTakeFirstOrThrow();
  await f.queues.enqueue('provision-server', { server_id: row.id });
  return row.id;
}

/** A tenant login as allocate answered it, but without TLS. */
async function loginWithout(a: {
  db_host: string;
  db_port: number;
  db_name: string;
  db_user: string;
  db_password: string;
}) {
  const client = new pg.Client({
    host: a.db_host,
    port: a.db_port,
    database: a.db_name,
    user: a.db_user,
    password: a.db_password,
    ssl: false,
  });
  client.on('error', () => {});
  try {
    await client.connect();
  } finally {
    await client.end().catch(() => {});
  }
}

const serverById = async (f: Fleet, id: string): Promise<DbServer> =>
  (await f.servers()).find((s) => s.id === id)!;

describe.skipIf(Boolean(skip))('the swarm driver in the fleet', () => {
  it('a shared pool as a swarm service: active, allocations work through the published port, tuned, health-checked, decommissioned', async () => {
    fleet = await startFleet({ replicas: 1, env: swarmEnv() });
    const f = fleet;
    const started = Date.now();
    await f.queues.enqueue('grow-shared-capacity', { reason: 'test' });
    await f.waitForServer((servers) => servers.some((s) => s.status === 'active'), 90_000);
    const [pool] = await f.servers('active');
    console.info(`swarm pool provisioned (row → active): ${Date.now() - started} ms`);
    expect(pool).toMatchObject({
      driver: 'swarm',
      host: '127.0.0.1',
      orchestrator_ref: pool!.name,
      image: inject('swarmImage'),
      health_status: 'healthy',
    });

    // Allocations on it: credentials that work through the published port.
    const ids = newIds('professional');
    const allocated = await f.api('POST', '/api/database/allocate', ids);
    expect(allocated.status).toBe(200);
    expect(allocated.body).toMatchObject({
      db_server_id: pool!.id,
      db_host: '127.0.0.1',
      db_port: pool!.port,
    });
    expect(await canLogin(allocated.body)).toBe(true);

    // TLS: the answer says verify-full with the fleet CA (canLogin above followed it); the same
    // tenant without TLS is refused; the key is in a secret, not in what Docker shows of the service.
    expect(allocated.body).toMatchObject({
      sslmode: 'verify-full',
      ssl_root_cert: expect.stringMatching(/^-----BEGIN CERTIFICATE-----/),
    });
    await expect(loginWithout(allocated.body)).rejects.toThrow(/no pg_hba.conf entry.*no encryption/);
    const [ssl] = await asAdmin<{ ssl: string }>(f, pool!, "SELECT current_setting('ssl') AS ssl");
    expect(ssl).toEqual({ ssl: 'on' });

    // max_connections is what the driver computed: every slot at the largest shared plan's limit.
    const [plan] = await f.db
      .selectFrom('plans')
      .select((eb) => eb.fn.max('connection_limit').as('limit'))
      .where('placement', '=', 'shared')
      .execute();
    const expected = maxConnectionsFor(pool!.max_instances, plan!.limit);
    expect(expected).toBe(10 * 40 + 20);
    const [shown] = await asAdmin<{ max_connections: string; shared_buffers: string }>(
      f,
      pool!,
      "SELECT current_setting('max_connections') AS max_connections, current_setting('shared_buffers') AS shared_buffers",
    );
    expect(shown).toEqual({ max_connections: String(expected), shared_buffers: '256MB' });

    // The admin password is not in the service as Docker shows it (docker service inspect).
    const { docker } = swarmOf(f);
    const inspected = JSON.stringify(await docker.getService(pool!.orchestrator_ref!).inspect());
    expect(inspected).toContain('POSTGRES_PASSWORD_FILE');
    expect(inspected).not.toContain(f.adminPassword(pool!));
    const cert = await createTlsRepo(f.db).serverCertificate(pool!.id);
    const keyLine = f.secrets.decrypt(cert!.key_enc, pool!.id).split('\n')[1]!;
    expect(inspected).toContain('tenantdb-tls-key');
    expect(inspected).not.toContain(keyLine);

    // The health check sees it.
    const checkedBefore = pool!.last_health_check!;
    await f.queues.enqueue('health-check-server', { server_id: pool!.id });
    await f.waitForServer((servers) => {
      const s = servers.find((x) => x.id === pool!.id)!;
      return s.last_health_check! > checkedBefore;
    });
    expect(await serverById(f, pool!.id)).toMatchObject({
      health_status: 'healthy',
      health_failures: 0,
      status: 'active',
    });

    // Decommission: release the tenant, then the server goes with its service and secret.
    expect((await f.api('DELETE', `/api/database/allocations/${ids.instance_id}`)).status).toBe(200);
    const decommission = await f.api(
      'DELETE',
      `/api/database/admin/pools/${pool!.id}`,
      undefined,
      f.adminToken,
    );
    expect(decommission.status).toBe(202);
    await f.waitForServer((servers) => servers.find((s) => s.id === pool!.id)?.status === 'decommissioned');
    expect(await servicesOf(f, pool!.id)).toEqual([]);
    expect(await secretsOf(f, pool!.id)).toEqual([]);
    const { Volumes } = await docker.listVolumes({ filters: { label: [`tenantdb.server-id=${pool!.id}`] } });
    expect(Volumes ?? []).toEqual([]);
    expect(await swarmOf(f).driver.list()).toEqual([]);
  });

  it('an image that does not exist: error with the reason at once, the service removed, one attempt', async () => {
    fleet = await startFleet({
      replicas: 1,
      env: swarmEnv({ TENANTDB_SWARM_IMAGE: '127.0.0.1:5999/tenantdb/no-such-image:1' }),
    });
    const f = fleet;
    const started = Date.now();
    const id = await provisionRow(f, `pool-badimage-${randomUUID().slice(0, 8)}`);
    await f.waitForServer((servers) => servers.find((s) => s.id === id)?.status === 'error', 60_000);
    const failed = await serverById(f, id);
    expect(failed.status_reason).toMatch(/provisioning failed: .*No such image/);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(await servicesOf(f, id)).toEqual([]);
    expect(await secretsOf(f, id)).toEqual([]);
    // No retry storm: the job stopped after its first attempt.
    const job = await f.queues.queue('provisioning').getJob(`provision-server-${id}`);
    expect(job?.attemptsMade).toBe(1);
    expect(job?.failedReason).toMatch(/No such image/);
  });

  it('a container that keeps exiting: error with the server log line that says why, the service removed', async () => {
    fleet = await startFleet({
      replicas: 1,
      env: swarmEnv({ TENANTDB_SERVER_SETTINGS: 'fsync=off,no_such_setting=on' }),
    });
    const f = fleet;
    const id = await provisionRow(f, `pool-crash-${randomUUID().slice(0, 8)}`);
    await f.waitForServer((servers) => servers.find((s) => s.id === id)?.status === 'error', 90_000);
    const failed = await serverById(f, id);
    expect(failed.status_reason).toMatch(/tasks failed in a row/);
    expect(failed.status_reason).toMatch(/unrecognized configuration parameter/);
    expect(await servicesOf(f, id)).toEqual([]);
    const job = await f.queues.queue('provisioning').getJob(`provision-server-${id}`);
    expect(job?.attemptsMade).toBe(1);
  });

  it('reconcile removes a labelled service with no catalog row and never touches an unlabelled one', async () => {
    fleet = await startFleet({ replicas: 1, env: swarmEnv() });
    const f = fleet;
    const { driver, docker } = swarmOf(f);
    await f.queues.enqueue('grow-shared-capacity', { reason: 'test' });
    await f.waitForServer((servers) => servers.some((s) => s.status === 'active'), 90_000);
    const [pool] = await f.servers('active');
    // The reconcile the worker runs on start must be over, or it would take the orphan below
    // while it is still being made.
    const maintenance = f.queues.queue('maintenance');
    await waitFor(
      async () => {
        const counts = await maintenance.getJobCounts('active', 'waiting', 'prioritized');
        return (counts.active ?? 0) + (counts.waiting ?? 0) + (counts.prioritized ?? 0) === 0;
      },
      30_000,
      'the start-up maintenance jobs',
    );
    // A server the driver made (labelled) whose catalog row never existed.
    const orphanId = randomUUID();
    const orphan = await driver.create(orphanServerRequest(orphanId, `orphan-${orphanId.slice(0, 8)}`));
    // Someone else's service, with a name like ours and one of our labels, but not managed-by.
    const foreign = `pool-foreign-${randomUUID().slice(0, 8)}`;
    await docker.createService({
      Name: foreign,
      Labels: { 'tenantdb.server-name': foreign },
      TaskTemplate: { ContainerSpec: { Image: inject('swarmImage') } },
      Mode: { Replicated: { Replicas: 0 } },
    });
    try {
      await f.queues.enqueue('reconcile', {});
      // Removing the orphan waits for its container to let go of the volume (up to a minute under
      // load, the driver's own bound): the wait covers that. If it still times out, the worker's
      // reconcile lines say where the time went.
      await waitFor(
        async () =>
          (
            await f.db
              .selectFrom('audit_events')
              .select('id')
              .where('action', '=', 'fleet.reconcile')
              .execute()
          ).length > 0,
        150_000,
        'reconcile to finish',
      ).catch((err: Error) => {
        const lines = f.logs
          .text()
          .split('\n')
          .filter((l) => /reconcile|orphan|job failed/.test(l));
        throw new Error(`${err.message}\nworker log:\n${lines.slice(-30).join('\n')}`);
      });
      expect(await servicesOf(f, orphanId)).toEqual([]);
      expect(await secretsOf(f, orphanId)).toEqual([]);
      expect(
        await docker
          .getService(orphan.ref)
          .inspect()
          .catch(() => 'gone'),
      ).toBe('gone');
      expect((await docker.getService(foreign).inspect()).Spec?.Name).toBe(foreign);
      expect((await driver.list()).map((o) => o.serverId)).toEqual([pool!.id]);
    } finally {
      await docker
        .getService(foreign)
        .remove()
        .catch(() => {});
    }
  }, 240_000);

  it('a worker killed during a swarm provision, then another: exactly one service for the server', async () => {
    fleet = await startFleet({ replicas: 0, env: swarmEnv() });
    const f = fleet;
    const child = f.spawnWorker();
    // The child's own planner run (its schedule fires on start) creates the first pool row.
    await f.waitForServer((servers) => servers.length === 1, 60_000);
    const [row] = await f.servers();
    // Kill as soon as the driver has started making the server: its secret exists.
    await waitFor(async () => (await secretsOf(f, row!.id)).length > 0, 60_000, 'the driver to start');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));

    await f.addWorker();
    await f.waitForServer(
      (servers) => servers.every((s) => s.status === 'active' || s.status === 'error'),
      90_000,
    );
    const servers = await f.servers();
    expect(servers).toHaveLength(1);
    const server = servers[0]!;
    expect(server.status).toBe('active');
    expect(await servicesOf(f, server.id)).toHaveLength(1);
    // One of each: the admin password, and the TLS key, certificate and pg_hba.
    expect(await secretsOf(f, server.id)).toHaveLength(4);
    expect((await swarmOf(f).driver.list()).map((o) => o.serverId)).toEqual([server.id]);
    const res = await f.api('POST', '/api/database/allocate', newIds());
    expect(res.status).toBe(200);
    expect(await canLogin(res.body)).toBe(true);
  });
});

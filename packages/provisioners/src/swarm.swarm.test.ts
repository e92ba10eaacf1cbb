// The swarm driver against a real single-node Docker Swarm (`.ci/swarm-sandbox.sh up`): services,
// secrets and volumes are real, and every server is reached by a real login on 127.0.0.1 through
// its host-mode published port. Everything this file makes carries a fleet label of its own and
// is removed in afterAll.
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import Docker from 'dockerode';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { PermanentProvisionError, type ServerSpec } from './provisioner';
import { waitUntilReady } from './ready';
import { createSwarmProvisioner, type SwarmProvisioner, type SwarmProvisionerOptions } from './swarm';
import { SWARM_LABELS, secretNameFor, swarmSettings, volumeNameFor } from './swarm.objects';
import { maxConnectionsFor } from './tuning';

const skip = inject('swarmSkipReason');
if (skip && inject('swarmRequired')) {
  it('runs on a swarm (CI=true: never skipped)', () => {
    throw new Error(`no swarm to run on: ${skip}`);
  });
}
const fleet = `test-${randomBytes(4).toString('hex')}`;
const suffix = randomBytes(3).toString('hex');
const docker = new Docker({ socketPath: '/var/run/docker.sock' });
const foreignServices: string[] = [];

function options(overrides: Partial<SwarmProvisionerOptions> = {}): SwarmProvisionerOptions {
  return {
    docker,
    image: inject('swarmImage'),
    fleet,
    publishMode: 'host',
    constraints: ['node.role==manager'],
    limits: {},
    reservations: { cpus: 0.1, memoryMb: 64 },
    restartDelayMs: 1000,
    volumeDriver: 'local',
    connectHost: '127.0.0.1',
    portRange: { from: 25432, to: 26431 },
    pinToNode: true,
    volumeRemoval: 'delete',
    startTimeoutMs: 60_000,
    ...overrides,
  };
}

function spec(name: string, overrides: Partial<ServerSpec> = {}): ServerSpec {
  return {
    serverId: `${name}-id`,
    name: `${name}-${suffix}`,
    serverType: 'shared',
    adminUser: 'tenantdb_admin',
    adminPassword: `${randomBytes(18).toString('base64url')}'"$ x`,
    maxInstances: 7,
    connectionLimit: 20,
    cpuLimit: 0.5,
    memoryLimitMb: 256,
    storageSizeGb: null,
    settings: { fsync: 'off' },
    ...overrides,
  };
}

async function sql<T extends pg.QueryResultRow>(
  at: { host: string; port: number },
  s: ServerSpec,
  text: string,
): Promise<T[]> {
  const client = new pg.Client({ ...at, user: s.adminUser, password: s.adminPassword, database: 'postgres' });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

const serviceExists = async (name: string) =>
  docker
    .getService(name)
    .inspect()
    .then(() => true)
    .catch(() => false);
const secretsOf = async (s: ServerSpec) =>
  (await docker.listSecrets()).filter((x) => x.Spec?.Name === secretNameFor(s.serverId));
const volumeExists = async (s: ServerSpec) =>
  docker
    .getVolume(volumeNameFor(s.serverId))
    .inspect()
    .then(() => true)
    .catch(() => false);

let driver: SwarmProvisioner;

describe.skipIf(Boolean(skip))('swarm driver', () => {
  beforeAll(() => {
    driver = createSwarmProvisioner(options());
  });

  afterAll(async () => {
    for (const o of await driver.list()) await driver.remove(o.ref).catch(() => {});
    for (const name of foreignServices)
      await docker
        .getService(name)
        .remove()
        .catch(() => {});
  });

  it('creates a service that takes a real login with the tuned settings, the password only in a secret, and removes it all', async () => {
    const s = spec('full');
    const started = Date.now();
    const server = await driver.create(s);
    expect(server).toMatchObject({ ref: s.name, host: '127.0.0.1', image: inject('swarmImage') });
    await waitUntilReady({ ...server, user: s.adminUser, password: s.adminPassword }, { timeoutMs: 60_000 });
    console.info(`swarm create → login: ${Date.now() - started} ms`);

    // Tuning arrived as -c arguments: what the driver computed is what the server runs with.
    const settings = swarmSettings(s, options());
    expect(settings.max_connections).toBe(String(maxConnectionsFor(7, 20)));
    const [shown] = await sql<{ max_connections: string; shared_buffers: string; fsync: string }>(
      server,
      s,
      "SELECT current_setting('max_connections') AS max_connections, current_setting('shared_buffers') AS shared_buffers, current_setting('fsync') AS fsync",
    );
    expect(shown).toEqual({ max_connections: '160', shared_buffers: '64MB', fsync: 'off' });

    // The password is nowhere in what Docker shows about the service, its task or its container.
    const service = await docker.getService(s.name).inspect();
    const tasks = await docker.listTasks({ filters: { service: [s.name] } });
    const containerId = tasks.find((t) => t.Status?.State === 'running')?.Status?.ContainerStatus
      ?.ContainerID;
    const container = await docker.getContainer(containerId).inspect();
    for (const shownByDocker of [service, tasks, container]) {
      expect(JSON.stringify(shownByDocker)).not.toContain(s.adminPassword);
      expect(JSON.stringify(shownByDocker)).not.toContain(JSON.stringify(s.adminPassword).slice(1, -1));
    }
    expect(JSON.stringify(container.Config.Env)).toContain('POSTGRES_PASSWORD_FILE=/run/secrets/');

    // Labelled, limited, pinned to the node it started on, restarted without an attempt limit.
    expect(service.Spec.Labels).toMatchObject({
      [SWARM_LABELS.managedBy]: 'tenantdb',
      [SWARM_LABELS.fleet]: fleet,
      [SWARM_LABELS.serverId]: s.serverId,
      [SWARM_LABELS.serverType]: 'shared',
    });
    const template = service.Spec.TaskTemplate;
    expect(template.Resources.Limits).toEqual({ NanoCPUs: 500_000_000, MemoryBytes: 256 * 1024 * 1024 });
    expect(template.RestartPolicy).toMatchObject({ Condition: 'any', MaxAttempts: 0 });
    const node = tasks[0]!.NodeID as string;
    expect(template.Placement.Constraints).toEqual(['node.role==manager', `node.id==${node}`]);
    // Pinning changed only the constraint: the task that started is the one still running.
    const after = await docker.listTasks({ filters: { service: [s.name] } });
    expect(after.filter((t) => t.Status?.State === 'running').map((t) => t.ID)).toEqual(
      tasks.filter((t) => t.Status?.State === 'running').map((t) => t.ID),
    );
    expect(await secretsOf(s)).toHaveLength(1);
    expect(await volumeExists(s)).toBe(true);

    expect(await driver.inspect(s.name)).toEqual({
      exists: true,
      running: true,
      host: '127.0.0.1',
      port: server.port,
    });
    expect(await driver.list()).toContainEqual({
      ref: s.name,
      serverId: s.serverId,
      name: s.name,
      running: true,
    });

    await driver.remove(s.name);
    expect(await serviceExists(s.name)).toBe(false);
    expect(await secretsOf(s)).toHaveLength(0);
    expect(await volumeExists(s)).toBe(false);
    expect(await driver.inspect(s.name)).toEqual({ exists: false, running: false });
    await driver.remove(s.name); // already gone is success
  });

  it('adopts what an earlier attempt made: the secret alone, then the service; racing creates make one service', async () => {
    const s = spec('adopt');
    // An attempt that died after its secret: the retry reuses it (secrets cannot be changed).
    const earlier = createSwarmProvisioner(options());
    const secretId = (
      (await docker.createSecret({
        Name: secretNameFor(s.serverId),
        Labels: {
          [SWARM_LABELS.managedBy]: 'tenantdb',
          [SWARM_LABELS.fleet]: fleet,
          [SWARM_LABELS.serverId]: s.serverId,
          [SWARM_LABELS.serverName]: s.name,
        },
        Data: Buffer.from(s.adminPassword).toString('base64'),
      })) as { id: string }
    ).id;
    // Two workers on the same job at once (a stalled job and its retry), each with its own driver.
    const [a, b] = await Promise.all([earlier.create(s), driver.create(s)]);
    expect(a).toEqual(b);
    const services = await docker.listServices({
      filters: { label: [`${SWARM_LABELS.serverId}=${s.serverId}`] },
    });
    expect(services).toHaveLength(1);
    expect((await secretsOf(s)).map((x) => x.ID)).toEqual([secretId]);
    await waitUntilReady({ ...a, user: s.adminUser, password: s.adminPassword }, { timeoutMs: 60_000 });
    await driver.remove(s.name);
  });

  it('an image that does not exist: create fails for good at once with the reason, and remove leaves nothing', async () => {
    const bad = createSwarmProvisioner(options({ image: '127.0.0.1:5999/tenantdb/no-such-image:1' }));
    const s = spec('badimage');
    const started = Date.now();
    const err = await bad.create(s).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentProvisionError);
    expect((err as Error).message).toMatch(/No such image/);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(await bad.inspect(s.name)).toMatchObject({ exists: true, running: false, terminal: true });
    await bad.remove(s.name);
    expect(await serviceExists(s.name)).toBe(false);
    expect(await secretsOf(s)).toHaveLength(0);
  });

  it('a container that keeps exiting is reported terminal with the server log line that says why', async () => {
    const s = spec('crash', { settings: { no_such_setting: 'on' } });
    let reason: string | undefined;
    try {
      await driver.create(s);
      // It ran for a moment before exiting: the state turns terminal as the exits pile up.
      const deadline = Date.now() + 60_000;
      for (;;) {
        const state = await driver.inspect(s.name);
        if (state.terminal) {
          reason = state.reason;
          break;
        }
        if (Date.now() > deadline) throw new Error(`never terminal: ${JSON.stringify(state)}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    } catch (err) {
      expect(err).toBeInstanceOf(PermanentProvisionError);
      reason = (err as Error).message;
    }
    expect(reason).toMatch(/tasks failed in a row/);
    expect(reason).toMatch(/unrecognized configuration parameter "no_such_setting"/);
    await driver.remove(s.name);
    expect(await serviceExists(s.name)).toBe(false);
  });

  it('a host port held by something else on the node: the service moves to another port', async () => {
    // Hold the first port of a two-port range; whichever the driver tries first, it ends on the other.
    const { held, port } = await holdPortWithFreeNeighbour();
    try {
      const narrow = createSwarmProvisioner(options({ portRange: { from: port, to: port + 1 } }));
      const s = spec('portclash');
      const server = await narrow.create(s);
      expect(server.port).toBe(port + 1);
      await waitUntilReady(
        { ...server, user: s.adminUser, password: s.adminPassword },
        { timeoutMs: 60_000 },
      );
      await narrow.remove(s.name);
    } finally {
      held.close();
    }
  });

  it('never touches a service without its labels, even one with a server name', async () => {
    const s = spec('foreign');
    foreignServices.push(s.name);
    await docker.createService({
      Name: s.name,
      TaskTemplate: { ContainerSpec: { Image: inject('swarmImage'), Env: ['POSTGRES_PASSWORD=not-ours'] } },
      Mode: { Replicated: { Replicas: 0 } },
    });
    await expect(driver.create(s)).rejects.toThrow(/not managed by this tenantdb fleet/);
    await expect(driver.remove(s.name)).rejects.toThrow(/refusing to remove/);
    expect(await driver.inspect(s.name)).toEqual({ exists: false, running: false });
    expect((await driver.list()).map((o) => o.name)).not.toContain(s.name);
    expect(await serviceExists(s.name)).toBe(true);
    // Another fleet's objects are not this one's either.
    const other = createSwarmProvisioner(options({ fleet: `${fleet}-other` }));
    expect((await other.list()).filter((o) => o.name.endsWith(suffix))).toEqual([]);
  });
});

/**
 * A held port whose next port is free, both below Linux's ephemeral range (32768+): a port from
 * `listen(0)` sits among the ports the machine's outgoing connections use, so its neighbour may
 * be taken by one of them a moment later.
 */
async function holdPortWithFreeNeighbour(): Promise<{ held: Server; port: number }> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 27000 + Math.floor(Math.random() * 5000);
    const held = await listen(port).catch(() => undefined);
    if (!held) continue;
    const neighbour = await listen(port + 1).catch(() => undefined);
    if (neighbour) {
      await new Promise((r) => neighbour.close(r));
      return { held, port };
    }
    held.close();
  }
  throw new Error('found no two free neighbouring ports in 27000-32000');
}

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    // All interfaces, as Docker's host-mode publishing binds them.
    server.listen(port, '0.0.0.0', () => resolve(server));
  });
}

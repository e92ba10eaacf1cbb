// The swarm driver's port repicking against a scripted Docker API (the real one is in
// swarm.swarm.test.ts): what the task list says after each update is fixed by the test, so the
// moment a real swarm shows only sometimes (the old port's failed task still listed) is shown
// every time.
import Docker from 'dockerode';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ServerSpec } from './provisioner';
import { createSwarmProvisioner } from './swarm';
import { hostPortOf } from './swarm.objects';

const A = 30121;
const B = 30122;

const spec: ServerSpec = {
  serverId: 'portclash-id',
  name: 'portclash',
  serverType: 'shared',
  adminUser: 'tenantdb_admin',
  adminPassword: 'a-password-of-some-length',
  maxInstances: 7,
  connectionLimit: 20,
  cpuLimit: 0.5,
  memoryLimitMb: 256,
  storageSizeGb: null,
  settings: {},
};

interface FakeTask {
  ID: string;
  CreatedAt: string;
  DesiredState: string;
  Status: { State: string; Err?: string; PortStatus?: { Ports: Docker.PortConfig[] } };
}

const at = (second: number) => new Date(Date.UTC(2026, 11, 2, 12, 0, second)).toISOString();
const failedOn = (id: string, second: number, port: number): FakeTask => ({
  ID: id,
  CreatedAt: at(second),
  DesiredState: 'shutdown',
  Status: {
    State: 'failed',
    Err: `Error starting userland proxy: listen tcp4 0.0.0.0:${port}: bind: address already in use`,
  },
});
const starting = (id: string, second: number): FakeTask => ({
  ID: id,
  CreatedAt: at(second),
  DesiredState: 'running',
  Status: { State: 'preparing' },
});
const runningOn = (id: string, second: number, port: number): FakeTask => ({
  ID: id,
  CreatedAt: at(second),
  DesiredState: 'running',
  Status: {
    State: 'running',
    PortStatus: { Ports: [{ Protocol: 'tcp', TargetPort: 5432, PublishedPort: port, PublishMode: 'host' }] },
  },
});

interface FakeService {
  ID: string;
  Version: { Index: number };
  CreatedAt: string;
  UpdatedAt: string;
  Spec: Docker.ServiceSpec;
  Endpoint: { Ports: Docker.PortConfig[] };
}

/**
 * A Docker API with one service: `tasksAfter(updates, polls)` is its task list once the service
 * spec was updated `updates` times, at the `polls`-th look since. Like the engine while an update
 * is under way, the endpoint still shows the previous spec's port next to the new one.
 */
function fakeDocker(tasksAfter: (updates: number, polls: number) => FakeTask[]) {
  const docker = new Docker({ socketPath: '/nonexistent/docker.sock' });
  let service: FakeService | undefined;
  let updates = 0;
  let polls = 0;
  const published: number[] = [];
  const notFound = () => Object.assign(new Error('no such service'), { statusCode: 404 });
  const fake = {
    listSecrets: async () => [],
    createSecret: async () => ({ id: 'secret-1' }),
    listServices: async () => (service ? [structuredClone(service)] : []),
    createService: async (s: Docker.ServiceSpec) => {
      published.push(hostPortOf(s)!);
      service = {
        ID: 'service-1',
        Version: { Index: 1 },
        CreatedAt: at(0),
        UpdatedAt: at(0),
        Spec: s,
        Endpoint: { Ports: s.EndpointSpec?.Ports ?? [] },
      };
      return { id: 'service-1' };
    },
    getService: (name: string) => ({
      inspect: async () => {
        if (!service || (name !== service.ID && name !== service.Spec.Name)) throw notFound();
        return structuredClone(service);
      },
      update: async (opts: { _body: Docker.ServiceSpec }) => {
        if (!service) throw notFound();
        const previous = service.Spec.EndpointSpec?.Ports ?? [];
        const next = opts._body.EndpointSpec?.Ports ?? [];
        published.push(hostPortOf(opts._body)!);
        updates++;
        polls = 0;
        service = {
          ...service,
          Version: { Index: service.Version.Index + 1 },
          UpdatedAt: at(10 * updates),
          Spec: opts._body,
          Endpoint: { Ports: [...previous, ...next] },
        };
      },
    }),
    listTasks: async () => tasksAfter(updates, polls++),
  };
  Object.assign(docker, fake);
  return { docker, published: () => published };
}

function driverOn(docker: Docker) {
  return createSwarmProvisioner({
    docker,
    image: '127.0.0.1:5999/tenantdb/postgres:15',
    fleet: 'unit',
    publishMode: 'host',
    constraints: [],
    limits: {},
    reservations: {},
    restartDelayMs: 1000,
    volumeDriver: 'local',
    connectHost: '127.0.0.1',
    portRange: { from: A, to: B },
    pinToNode: false,
    volumeRemoval: 'keep',
    startTimeoutMs: 20_000,
  });
}

describe('swarm driver: a host port held by something else', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('moves once: the old port failed task still listed after the move is not a conflict on the new port', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0); // the first free port of the range: A, held by someone
    const { docker, published } = fakeDocker((updates, polls) => {
      if (updates === 0) return [failedOn('t1', 1, A)];
      // The update to B: its task starts while the failed task on A is still in the list.
      if (polls < 2) return [failedOn('t1', 1, A), starting('t2', 11)];
      return [failedOn('t1', 1, A), runningOn('t2', 11, B)];
    });
    const server = await driverOn(docker).create(spec);
    expect(server).toMatchObject({ host: '127.0.0.1', port: B });
    expect(published()).toEqual([A, B]);
  });

  it('moves again for a conflict on the port it publishes now, and its own earlier port is free to it', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const { docker, published } = fakeDocker((updates) => {
      if (updates === 0) return [failedOn('t1', 1, A)];
      // On B someone else is in the way too (and A's holder has gone): back to A, the only other port.
      if (updates === 1) return [failedOn('t1', 1, A), failedOn('t2', 11, B)];
      return [failedOn('t1', 1, A), failedOn('t2', 11, B), runningOn('t3', 21, A)];
    });
    const server = await driverOn(docker).create(spec);
    expect(server.port).toBe(A);
    expect(published()).toEqual([A, B, A]);
  });
});

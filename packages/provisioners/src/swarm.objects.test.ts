import type Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import { PermanentProvisionError, type ServerSpec } from './provisioner';
import {
  buildSecretSpec,
  buildServiceSpec,
  hostPortOf,
  pinnedNode,
  type SwarmObjectOptions,
  validateSwarmSpec,
  withNodePin,
  withPublishedPort,
} from './swarm.objects';
import {
  conflictOnCurrentPort,
  demuxDockerLog,
  lastFatalLine,
  summarizeTasks,
  type TaskView,
  toTaskView,
} from './swarm.tasks';

const options: SwarmObjectOptions = {
  image: 'postgres:16-alpine',
  fleet: 'prod',
  publishMode: 'host',
  constraints: ['node.labels.tenantdb.postgres==true'],
  limits: { cpus: 2, memoryMb: 2048 },
  reservations: { cpus: 4, memoryMb: 512 },
  restartDelayMs: 5000,
  volumeDriver: 'local',
};

const spec: ServerSpec = {
  serverId: '3f1c1a52-9c8e-4a53-8c3f-1f0b2a7d9e10',
  name: 'pool-abc123',
  serverType: 'shared',
  adminUser: 'tenantdb_admin',
  adminPassword: 'a-very-secret-password-of-some-length',
  maxInstances: 50,
  connectionLimit: 40,
  cpuLimit: null,
  memoryLimitMb: 4096,
  storageSizeGb: null,
  settings: { log_min_duration_statement: '500' },
};

const secret = { id: 'sec123', name: 'tenantdb-admin-x' };
const container = (s: Docker.ServiceSpec) => (s.TaskTemplate as Docker.ContainerTaskSpec).ContainerSpec!;
const template = (s: Docker.ServiceSpec) => s.TaskTemplate as Docker.ContainerTaskSpec;

describe('buildServiceSpec', () => {
  const built = buildServiceSpec({ spec, options, secret, publishedPort: 25500 });

  it('passes tuning as postgres -c arguments sized from the slots, the plan and the memory limit', () => {
    expect(container(built).Args).toEqual([
      'postgres',
      '-c',
      'max_connections=2020',
      '-c',
      'shared_buffers=1024MB',
      '-c',
      'effective_cache_size=3072MB',
      '-c',
      'maintenance_work_mem=256MB',
      '-c',
      'work_mem=519kB',
      '-c',
      'wal_level=logical',
      '-c',
      'max_replication_slots=10',
      '-c',
      'max_wal_senders=10',
      '-c',
      'max_logical_replication_workers=8',
      '-c',
      'max_worker_processes=16',
      '-c',
      'max_slot_wal_keep_size=4096MB',
      '-c',
      'log_min_duration_statement=500',
    ]);
  });

  it('delivers the password as a secret file, never in the spec', () => {
    expect(JSON.stringify(built)).not.toContain(spec.adminPassword);
    expect(container(built).Env).toContain('POSTGRES_PASSWORD_FILE=/run/secrets/tenantdb-admin-password');
    expect(container(built).Secrets).toEqual([
      {
        SecretID: 'sec123',
        SecretName: 'tenantdb-admin-x',
        File: { Name: 'tenantdb-admin-password', UID: '0', GID: '0', Mode: 0o400 },
      },
    ]);
    const s = buildSecretSpec(spec, 'prod');
    expect(s.Name).toBe(`tenantdb-admin-${spec.serverId}`);
    expect(Buffer.from(s.Data, 'base64').toString()).toBe(spec.adminPassword);
  });

  it('labels the service, its container and its volume; one volume per server', () => {
    const labels = {
      'tenantdb.managed-by': 'tenantdb',
      'tenantdb.fleet': 'prod',
      'tenantdb.server-id': spec.serverId,
      'tenantdb.server-name': 'pool-abc123',
      'tenantdb.server-type': 'shared',
    };
    expect(built.Labels).toEqual(labels);
    expect(container(built).Labels).toEqual(labels);
    const [volume] = container(built).Mounts!;
    expect(volume).toMatchObject({
      Type: 'volume',
      Source: `tenantdb-data-${spec.serverId}`,
      Target: '/var/lib/postgresql/data',
      VolumeOptions: { Labels: labels, DriverConfig: { Name: 'local' } },
    });
  });

  it('limits from the row (else the defaults), reservations never above them; restart without a max', () => {
    expect(template(built).Resources).toEqual({
      Limits: { NanoCPUs: 2_000_000_000, MemoryBytes: 4096 * 1024 * 1024 },
      Reservations: { NanoCPUs: 2_000_000_000, MemoryBytes: 512 * 1024 * 1024 },
    });
    expect(template(built).RestartPolicy).toEqual({
      Condition: 'any',
      Delay: 5_000_000_000,
      MaxAttempts: 0,
      Window: 0,
    });
    expect(built.UpdateConfig?.Order).toBe('stop-first');
    expect(template(built).Placement?.Constraints).toEqual(['node.labels.tenantdb.postgres==true']);
  });

  it('publishes per mode: a fixed host port, an ingress port swarm picks, or none on an overlay', () => {
    expect(built.EndpointSpec?.Ports).toEqual([
      { Protocol: 'tcp', TargetPort: 5432, PublishedPort: 25500, PublishMode: 'host' },
    ]);
    const ingress = buildServiceSpec({ spec, options: { ...options, publishMode: 'ingress' }, secret });
    expect(ingress.EndpointSpec?.Ports).toEqual([
      { Protocol: 'tcp', TargetPort: 5432, PublishMode: 'ingress' },
    ]);
    const overlay = buildServiceSpec({
      spec,
      options: { ...options, publishMode: 'none', network: 'tenantdb-net' },
      secret,
    });
    expect(overlay.EndpointSpec?.Ports).toEqual([]);
    expect(template(overlay).Networks).toEqual([{ Target: 'tenantdb-net', Aliases: ['pool-abc123'] }]);
    expect(() => buildServiceSpec({ spec, options: { ...options, publishMode: 'none' }, secret })).toThrow(
      PermanentProvisionError,
    );
  });

  it('re-ports and pins without touching anything else', () => {
    const moved = withPublishedPort(built, 25600);
    expect(hostPortOf(moved)).toBe(25600);
    expect(container(moved)).toEqual(container(built));
    const pinned = withNodePin(withNodePin(built, 'node-a'), 'node-b');
    expect(pinnedNode(built)).toBeUndefined();
    expect(pinnedNode(pinned)).toBe('node-b');
    expect(template(pinned).Placement?.Constraints).toEqual([
      'node.labels.tenantdb.postgres==true',
      'node.id==node-b',
    ]);
  });
});

describe('validateSwarmSpec', () => {
  it('refuses names, ids and settings the driver cannot use safely', () => {
    expect(() => validateSwarmSpec(spec)).not.toThrow();
    for (const bad of [
      { name: 'Pool_1' },
      { serverId: 'x'.repeat(60) },
      { adminUser: 'Robert"; DROP' },
      { settings: { port: '6543' } },
      { settings: { listen_addresses: '*' } },
      { settings: { 'bad name': '1' } },
      { settings: { work_mem: '1MB\nfsync=off' } },
      { connectionLimit: 0 },
    ]) {
      expect(() => validateSwarmSpec({ ...spec, ...bad } as ServerSpec), JSON.stringify(bad)).toThrow(
        PermanentProvisionError,
      );
    }
  });
});

const task = (over: Partial<TaskView> & { createdAt: string }): TaskView => ({
  id: over.createdAt,
  state: 'running',
  desiredState: 'running',
  ...over,
});

describe('summarizeTasks', () => {
  it('running wins; history does not matter', () => {
    const s = summarizeTasks(
      [
        task({ createdAt: '1', state: 'failed', desiredState: 'shutdown', error: 'task: non-zero exit (1)' }),
        task({ createdAt: '2', publishedPort: 25500 }),
      ],
      3,
    );
    expect(s).toMatchObject({ running: { createdAt: '2', publishedPort: 25500 }, terminal: false });
  });

  it('an image that cannot be had is terminal at the first rejection', () => {
    const s = summarizeTasks(
      [
        task({
          createdAt: '1',
          state: 'rejected',
          desiredState: 'shutdown',
          error: 'No such image: 127.0.0.1:5999/x:1',
        }),
        task({ createdAt: '2', state: 'preparing' }),
      ],
      3,
    );
    expect(s.terminal).toBe(true);
    expect(s.reason).toBe('task rejected: No such image: 127.0.0.1:5999/x:1');
  });

  it('exits are counted across the replacement being started; fewer than the limit is not terminal', () => {
    const exit = (createdAt: string) =>
      task({
        createdAt,
        state: 'failed',
        desiredState: 'shutdown',
        exitCode: 1,
        error: 'task: non-zero exit (1)',
      });
    expect(
      summarizeTasks([exit('1'), exit('2'), task({ createdAt: '3', state: 'starting' })], 3),
    ).toMatchObject({
      terminal: false,
      reason: '2 tasks failed in a row; last: task failed (exit code 1): task: non-zero exit (1)',
    });
    expect(
      summarizeTasks([exit('1'), exit('2'), exit('3'), task({ createdAt: '4', state: 'ready' })], 3),
    ).toMatchObject({ terminal: true, failed: { createdAt: '3' } });
    // A task that ran fine and was stopped (an update) breaks the streak.
    expect(
      summarizeTasks([exit('1'), exit('2'), task({ createdAt: '3', state: 'shutdown' }), exit('4')], 3)
        .terminal,
    ).toBe(false);
  });

  it('reports a port held by someone else as a conflict, and a pending task as not terminal', () => {
    const clash = summarizeTasks(
      [
        task({
          createdAt: '1',
          state: 'failed',
          error: 'Error starting userland proxy: listen tcp4 0.0.0.0:26500: bind: address already in use',
        }),
      ],
      3,
    );
    expect(clash.portConflict).toBe(true);
    expect(clash.conflictPort).toBe(26500);
    const pending = summarizeTasks(
      [
        task({
          createdAt: '1',
          state: 'pending',
          error: 'no suitable node (insufficient resources on 1 node)',
        }),
      ],
      3,
    );
    expect(pending).toMatchObject({ terminal: false, portConflict: false });
    expect(pending.reason).toMatch(/insufficient resources/);
    expect(summarizeTasks([], 3)).toMatchObject({ terminal: false, reason: 'no task scheduled yet' });
  });

  it('reads the fields it needs from the Docker API shape', () => {
    expect(
      toTaskView({
        ID: 't1',
        NodeID: 'n1',
        DesiredState: 'running',
        CreatedAt: '2026-01-01T00:00:00Z',
        Status: {
          State: 'running',
          ContainerStatus: { ContainerID: 'c1', ExitCode: 0 },
          PortStatus: { Ports: [{ TargetPort: 5432, PublishedPort: 25501, PublishMode: 'host' }] },
        },
      }),
    ).toEqual({
      id: 't1',
      nodeId: 'n1',
      state: 'running',
      desiredState: 'running',
      createdAt: '2026-01-01T00:00:00Z',
      containerId: 'c1',
      publishedPort: 25501,
    });
  });
});

describe('container logs', () => {
  it('demultiplexes Docker log frames and finds the last FATAL line', () => {
    const frame = (type: number, text: string) => {
      const header = Buffer.alloc(8);
      header[0] = type;
      header.writeUInt32BE(Buffer.byteLength(text), 4);
      return Buffer.concat([header, Buffer.from(text)]);
    };
    const log = demuxDockerLog(
      Buffer.concat([
        frame(1, 'LOG:  starting\n'),
        frame(2, 'FATAL:  unrecognized configuration parameter "x"\n'),
        frame(2, 'LOG:  database system is shut down\n'),
      ]),
    );
    expect(lastFatalLine(log)).toBe('FATAL:  unrecognized configuration parameter "x"');
    expect(demuxDockerLog(Buffer.from('plain tty output'))).toBe('plain tty output');
  });
});

describe('conflictOnCurrentPort', () => {
  const failed = (error: string, createdAt = '2026-12-02T12:00:05.000000001Z') =>
    summarizeTasks([task({ createdAt, state: 'failed', error })], 3);
  const onPort = (port: number) => `Bind for 0.0.0.0:${port} failed: port is already allocated`;

  it('is about the port the spec publishes now, not one an earlier spec published', () => {
    expect(failed(onPort(30121)).conflictPort).toBe(30121);
    expect(conflictOnCurrentPort(failed(onPort(30121)), { port: 30121 })).toBe(true);
    expect(conflictOnCurrentPort(failed(onPort(30121)), { port: 30122 })).toBe(false);
    expect(
      conflictOnCurrentPort(failed('listen tcp6 [::]:30122: bind: address already in use'), { port: 30122 }),
    ).toBe(true);
    expect(conflictOnCurrentPort(failed('no such image'), { port: 30121 })).toBe(false);
    expect(conflictOnCurrentPort(failed(onPort(30121)), { port: undefined })).toBe(false);
  });

  it('without a port in the message: only a task created since the spec last changed', () => {
    const scheduler = 'no suitable node (host-mode port already in use on 1 node)';
    const before = { port: 30121, specChangedAt: '2026-12-02T12:00:06.5Z' };
    const after = { port: 30121, specChangedAt: '2026-12-02T12:00:04Z' };
    expect(failed(scheduler).conflictPort).toBeUndefined();
    expect(conflictOnCurrentPort(failed(scheduler), before)).toBe(false);
    expect(conflictOnCurrentPort(failed(scheduler), after)).toBe(true);
    expect(conflictOnCurrentPort(failed(scheduler), { port: 30121 })).toBe(true);
  });
});

import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { describe, expect, it } from 'vitest';
import { buildCnpgCluster } from './kubernetes.cnpg';
import {
  buildAdminSecret,
  hostFor,
  type KubernetesObjectOptions,
  managedSelector,
  validateKubernetesSpec,
} from './kubernetes.objects';
import { summarizePods } from './kubernetes.pods';
import { buildHeadlessService, buildStatefulSet } from './kubernetes.statefulset';
import { PermanentProvisionError, type ServerSpec } from './provisioner';

const options: KubernetesObjectOptions = {
  namespace: 'tenantdb-servers',
  mode: 'statefulset',
  image: 'postgres:16.4-alpine',
  storageClass: 'fast-ssd',
  storageSizeGb: 10,
  runAsUser: 70,
  limits: { cpus: 1, memoryMb: 1024 },
  requests: { cpus: 0.25, memoryMb: 2048 },
  nodeSelector: { 'tenantdb/postgres': 'true' },
  volumeRemoval: 'delete',
};

const spec: ServerSpec = {
  serverId: '3f1c1a52-9c8e-4a53-8c3f-1f0b2a7d9e10',
  name: 'ded-0123456789abcdef0123',
  serverType: 'dedicated',
  adminUser: 'tenantdb_admin',
  adminPassword: 'a-very-secret-password-of-some-length',
  maxInstances: 1,
  connectionLimit: 200,
  cpuLimit: 2,
  memoryLimitMb: 4096,
  storageSizeGb: 50,
  settings: { log_min_duration_statement: '500' },
};

const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_KEY = /^([a-z0-9.-]{1,253}\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

/** Every label set in an object (metadata, templates, selectors), checked against Kubernetes' rules. */
function labelSets(o: unknown, out: Record<string, string>[] = []): Record<string, string>[] {
  if (Array.isArray(o)) for (const v of o) labelSets(v, out);
  else if (o && typeof o === 'object') {
    for (const [k, v] of Object.entries(o)) {
      if ((k === 'labels' || k === 'matchLabels') && v && typeof v === 'object')
        out.push(v as Record<string, string>);
      else labelSets(v, out);
    }
  }
  return out;
}

describe('kubernetes objects', () => {
  const variants: [string, KubernetesObjectOptions, ServerSpec][] = [
    ['full options', options, spec],
    [
      'bare options, bare row',
      {
        ...options,
        storageClass: undefined,
        limits: {},
        requests: {},
        nodeSelector: {},
        volumeRemoval: 'keep',
      },
      { ...spec, cpuLimit: null, memoryLimitMb: null, storageSizeGb: null, settings: {} },
    ],
  ];

  it.each(variants)('every object validates against the schema (%s), with valid labels', (_, o, s) => {
    const objects = [
      buildAdminSecret(s, o),
      buildHeadlessService(s, o),
      buildStatefulSet(s, o),
      buildCnpgCluster(s, { ...o, mode: 'cnpg' }),
    ];
    for (const object of objects) {
      expect(() => object.validate(), object.kind).not.toThrow();
      for (const labels of labelSets(object.toJSON())) {
        for (const [k, v] of Object.entries(labels)) {
          expect(k).toMatch(LABEL_KEY);
          expect(v).toMatch(LABEL_VALUE);
          expect(v.length).toBeLessThanOrEqual(63);
        }
      }
    }
  });

  it('validation is real: a broken StatefulSet does not pass', () => {
    const broken = buildStatefulSet(spec, options).toJSON() as { spec: { replicas: unknown } };
    broken.spec.replicas = 'one';
    expect(() => new StatefulSet(broken as never).validate()).toThrow();
  });

  it('the password only in the Secret; the StatefulSet mounts it as a file', () => {
    const secret = buildAdminSecret(spec, options);
    expect(secret.type).toBe('kubernetes.io/basic-auth');
    expect(Buffer.from(secret.data!.password!, 'base64').toString()).toBe(spec.adminPassword);
    expect(Buffer.from(secret.data!.username!, 'base64').toString()).toBe('tenantdb_admin');
    const sts = buildStatefulSet(spec, options);
    const cluster = buildCnpgCluster(spec, { ...options, mode: 'cnpg' });
    expect(JSON.stringify(sts)).not.toContain(spec.adminPassword);
    expect(JSON.stringify(cluster)).not.toContain(spec.adminPassword);
    const container = sts.spec!.template.spec!.containers[0]!;
    expect(container.env).toContainEqual({
      name: 'POSTGRES_PASSWORD_FILE',
      value: '/etc/tenantdb/admin/password',
    });
    expect(sts.spec!.template.spec!.volumes).toContainEqual({
      name: 'admin',
      secret: {
        secretName: `${spec.name}-admin`,
        items: [{ key: 'password', path: 'password' }],
        defaultMode: 0o440,
      },
    });
  });

  it('StatefulSet: tuning as -c args, resources, non-root, probes, a claim from the storage class', () => {
    const sts = buildStatefulSet(spec, options).toJSON() as ReturnType<StatefulSet['toJSON']>;
    const pod = sts.spec!.template.spec!;
    const container = pod.containers[0]!;
    expect(container.args).toEqual([
      'postgres',
      '-c',
      'max_connections=220',
      '-c',
      'shared_buffers=1024MB',
      '-c',
      'effective_cache_size=3072MB',
      '-c',
      'maintenance_work_mem=256MB',
      '-c',
      'work_mem=4766kB',
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
    // The row's limits win over the defaults; a request never above its limit.
    expect(container.resources).toEqual({
      limits: { cpu: '2000m', memory: '4096Mi' },
      requests: { cpu: '250m', memory: '2048Mi' },
    });
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 70, fsGroup: 70 });
    expect(container.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    for (const probe of [container.startupProbe, container.readinessProbe, container.livenessProbe]) {
      expect(probe?.exec?.command?.[0]).toBe('pg_isready');
    }
    expect(pod.nodeSelector).toEqual({ 'tenantdb/postgres': 'true' });
    expect(sts.spec!.serviceName).toBe(spec.name);
    expect(sts.spec!.volumeClaimTemplates).toEqual([
      expect.objectContaining({
        spec: {
          accessModes: ['ReadWriteOnce'],
          storageClassName: 'fast-ssd',
          resources: { requests: { storage: '50Gi' } },
        },
      }),
    ]);
    expect(sts.spec!.persistentVolumeClaimRetentionPolicy).toEqual({
      whenDeleted: 'Delete',
      whenScaled: 'Retain',
    });
    // The selector is immutable on a StatefulSet: only labels that never change for a server.
    expect(sts.spec!.selector.matchLabels).toEqual({
      'app.kubernetes.io/instance': spec.name,
      'tenantdb/server-id': spec.serverId,
    });
    const svc = buildHeadlessService(spec, options);
    expect(svc.spec).toMatchObject({ clusterIP: 'None', selector: sts.spec!.selector.matchLabels });
  });

  it('CNPG Cluster: one instance, the admin as a managed superuser role, parameters, storage', () => {
    const cluster = buildCnpgCluster(spec, {
      ...options,
      mode: 'cnpg',
      image: 'ghcr.io/cloudnative-pg/postgresql:16.4',
    });
    expect(cluster.spec).toMatchObject({
      instances: 1,
      imageName: 'ghcr.io/cloudnative-pg/postgresql:16.4',
      enableSuperuserAccess: false,
      postgresql: { parameters: { max_connections: '220', shared_buffers: '1024MB' } },
      managed: { roles: [{ name: 'tenantdb_admin', login: true, superuser: true, ensure: 'present' }] },
      storage: { size: '50Gi', storageClass: 'fast-ssd' },
      affinity: { nodeSelector: { 'tenantdb/postgres': 'true' } },
    });
    expect(cluster.spec!.inheritedMetadata?.labels?.['tenantdb/server-id']).toBe(spec.serverId);
  });

  it('names, hosts, selectors; names too long for pods are refused', () => {
    expect(hostFor('pool-a', options)).toBe('pool-a.tenantdb-servers.svc');
    expect(hostFor('pool-a', { ...options, mode: 'cnpg' })).toBe('pool-a-rw.tenantdb-servers.svc');
    expect(managedSelector()).toBe('app.kubernetes.io/managed-by=tenantdb,tenantdb/server-id');
    expect(managedSelector('x')).toBe('app.kubernetes.io/managed-by=tenantdb,tenantdb/server-id=x');
    expect(() => validateKubernetesSpec(spec)).not.toThrow();
    for (const bad of [{ name: 'a'.repeat(51) }, { adminUser: 'postgres' }, { settings: { port: '1' } }]) {
      expect(() => validateKubernetesSpec({ ...spec, ...bad } as ServerSpec)).toThrow(
        PermanentProvisionError,
      );
    }
  });
});

describe('summarizePods', () => {
  const waiting = (reason: string, message: string, restartCount = 0) => ({
    metadata: { name: 'ded-x-0' },
    status: {
      phase: 'Pending',
      containerStatuses: [
        { name: 'postgres', ready: false, restartCount, state: { waiting: { reason, message } } },
      ],
    },
  });

  it('ready when every container is ready', () => {
    expect(
      summarizePods([{ status: { phase: 'Running', containerStatuses: [{ ready: true }] } }], 3),
    ).toEqual({ ready: true, terminal: false });
    expect(summarizePods([], 3)).toEqual({ ready: false, reason: 'no pod yet', terminal: false });
  });

  it('a missing image is terminal; a registry that is down is not', () => {
    expect(summarizePods([waiting('ErrImagePull', 'rpc error: manifest unknown')], 3).terminal).toBe(true);
    expect(
      summarizePods([waiting('InvalidImageName', 'couldn\'t parse image reference "UPPER"')], 3).terminal,
    ).toBe(true);
    const down = summarizePods([waiting('ImagePullBackOff', 'dial tcp 10.0.0.1:443: i/o timeout')], 3);
    expect(down).toMatchObject({ ready: false, terminal: false });
    expect(down.reason).toBe('pod ded-x-0: ImagePullBackOff: dial tcp 10.0.0.1:443: i/o timeout');
  });

  it('a crash loop is terminal after enough restarts, and says how it exited', () => {
    const pod = (restarts: number) => {
      const p = waiting('CrashLoopBackOff', 'back-off 40s restarting failed container', restarts);
      (p.status.containerStatuses[0] as Record<string, unknown>).lastState = {
        terminated: { exitCode: 1, reason: 'Error' },
      };
      return p;
    };
    expect(summarizePods([pod(2)], 3).terminal).toBe(false);
    const s = summarizePods([pod(3)], 3);
    expect(s.terminal).toBe(true);
    expect(s.reason).toMatch(/CrashLoopBackOff.*restarted 3 times; last exit code 1 \(Error\)/);
  });

  it('an unschedulable pod is reported, not terminal (capacity may come)', () => {
    const s = summarizePods(
      [
        {
          metadata: { name: 'p' },
          status: {
            phase: 'Pending',
            conditions: [
              {
                type: 'PodScheduled',
                status: 'False',
                reason: 'Unschedulable',
                message: '0/3 nodes are available',
              },
            ],
          },
        },
      ],
      3,
    );
    expect(s).toEqual({
      ready: false,
      terminal: false,
      reason: 'pod p: not scheduled: Unschedulable 0/3 nodes are available',
    });
  });
});

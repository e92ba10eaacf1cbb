// What the kubernetes driver asks the API server for, as pure functions of a server spec and the
// driver's options, built with kubernetes-models so each object validates against the
// Kubernetes (and CloudNativePG) schema before it is sent. Also: how pods read (running, starting,
// or failed for good). No I/O here; kubernetes.ts does the calls.
import { Cluster } from '@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1/Cluster';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import type { IResourceRequirements } from 'kubernetes-models/v1/ResourceRequirements';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { MANAGED_BY, PermanentProvisionError, type ServerSpec } from './provisioner';
import { postgresArgs, tunedSettings, validateSettings } from './tuning';

export const K8S_LABELS = {
  managedBy: 'app.kubernetes.io/managed-by',
  name: 'app.kubernetes.io/name',
  /** The server name: the main object's name, and how a leftover is traced back to it. */
  instance: 'app.kubernetes.io/instance',
  serverId: 'tenantdb/server-id',
  serverType: 'tenantdb/server-type',
} as const;

export type KubernetesMode = 'statefulset' | 'cnpg';

export interface KubernetesObjectOptions {
  namespace: string;
  mode: KubernetesMode;
  image: string;
  /** Unset: the cluster's default storage class. */
  storageClass?: string;
  /** For servers whose row sets no size. */
  storageSizeGb: number;
  /** statefulset mode: the image's postgres uid (70 in -alpine images, 999 in Debian ones). */
  runAsUser: number;
  /** Defaults for servers whose row has no limit of its own. */
  limits: { cpus?: number; memoryMb?: number };
  requests: { cpus?: number; memoryMb?: number };
  nodeSelector: Record<string, string>;
  /** statefulset mode: what deleting a server does to its PersistentVolumeClaim. */
  volumeRemoval: 'delete' | 'keep';
}

export const POSTGRES_PORT = 5432;
const PGDATA_MOUNT = '/var/lib/postgresql/data';
const PGDATA = `${PGDATA_MOUNT}/pgdata`;
const SECRET_MOUNT = '/etc/tenantdb/admin';
/**
 * Pods are `<name>-0` and carry a `<name>-<10 char hash>` revision label of at most 63
 * characters; CNPG adds `-rw`, `-1`, … Fifty leaves room for all of them.
 */
const NAME_RE = /^[a-z][a-z0-9-]{0,49}$/;
const SERVER_ID_RE = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;
const USER_RE = /^[a-z_][a-z0-9_]{0,62}$/;

export const secretNameFor = (name: string) => `${name}-admin`;
/** The claim the StatefulSet's volumeClaimTemplate `data` makes for its only pod. */
export const claimNameFor = (name: string) => `data-${name}-0`;

/** Where the control plane reaches the server: the Service DNS name (CNPG: its read-write Service). */
export function hostFor(name: string, options: Pick<KubernetesObjectOptions, 'namespace' | 'mode'>): string {
  return options.mode === 'cnpg' ? `${name}-rw.${options.namespace}.svc` : `${name}.${options.namespace}.svc`;
}

export function labelsFor(
  spec: Pick<ServerSpec, 'serverId' | 'name' | 'serverType'>,
): Record<string, string> {
  return {
    [K8S_LABELS.managedBy]: MANAGED_BY,
    [K8S_LABELS.name]: 'tenantdb-postgres',
    [K8S_LABELS.instance]: spec.name,
    [K8S_LABELS.serverId]: spec.serverId,
    [K8S_LABELS.serverType]: spec.serverType,
  };
}

/** Label selector of everything the driver made (optionally for one server). */
export function managedSelector(serverId?: string): string {
  return `${K8S_LABELS.managedBy}=${MANAGED_BY},${serverId ? `${K8S_LABELS.serverId}=${serverId}` : K8S_LABELS.serverId}`;
}

export function isManaged(labels: Record<string, string> | undefined): boolean {
  return labels?.[K8S_LABELS.managedBy] === MANAGED_BY && Boolean(labels[K8S_LABELS.serverId]);
}

export function validateRef(ref: string): void {
  if (!NAME_RE.test(ref))
    throw new PermanentProvisionError(
      `invalid kubernetes server name ${JSON.stringify(ref)} (at most 50 characters)`,
    );
}

export function validateKubernetesSpec(spec: ServerSpec): void {
  validateRef(spec.name);
  if (!SERVER_ID_RE.test(spec.serverId))
    throw new PermanentProvisionError(`invalid server id ${JSON.stringify(spec.serverId)}`);
  if (!USER_RE.test(spec.adminUser))
    throw new PermanentProvisionError(`invalid admin user ${JSON.stringify(spec.adminUser)}`);
  if (spec.adminUser === 'postgres' || spec.adminUser === 'streaming_replica')
    throw new PermanentProvisionError(`admin user ${spec.adminUser} is reserved`);
  if (!spec.adminPassword) throw new PermanentProvisionError('an admin password is required');
  if (!Number.isInteger(spec.maxInstances) || spec.maxInstances < 1)
    throw new PermanentProvisionError(`invalid maxInstances ${spec.maxInstances}`);
  validateSettings(spec.settings ?? {});
}

export function effectiveLimits(spec: ServerSpec, options: KubernetesObjectOptions) {
  return {
    cpus: spec.cpuLimit ?? options.limits.cpus,
    memoryMb: spec.memoryLimitMb ?? options.limits.memoryMb,
    storageGb: spec.storageSizeGb ?? options.storageSizeGb,
  };
}

export function kubernetesSettings(
  spec: ServerSpec,
  options: KubernetesObjectOptions,
): Record<string, string> {
  return tunedSettings({ ...spec, memoryLimitMb: effectiveLimits(spec, options).memoryMb ?? null });
}

const cpu = (cores: number) => `${Math.max(1, Math.round(cores * 1000))}m`;
const mebibytes = (mb: number) => `${mb}Mi`;

function resources(spec: ServerSpec, options: KubernetesObjectOptions): IResourceRequirements {
  const limits = effectiveLimits(spec, options);
  const request = (wanted: number | undefined, limit: number | undefined) =>
    wanted === undefined ? undefined : limit === undefined ? wanted : Math.min(wanted, limit);
  const cpuRequest = request(options.requests.cpus, limits.cpus);
  const memoryRequest = request(options.requests.memoryMb, limits.memoryMb);
  const out: IResourceRequirements = {};
  const l: Record<string, string> = {};
  if (limits.cpus !== undefined) l.cpu = cpu(limits.cpus);
  if (limits.memoryMb !== undefined) l.memory = mebibytes(limits.memoryMb);
  const r: Record<string, string> = {};
  if (cpuRequest !== undefined) r.cpu = cpu(cpuRequest);
  if (memoryRequest !== undefined) r.memory = mebibytes(memoryRequest);
  if (Object.keys(l).length) out.limits = l;
  if (Object.keys(r).length) out.requests = r;
  return out;
}

/**
 * The admin credentials: basic-auth, as CloudNativePG wants for a managed role's password; the
 * StatefulSet mounts its password key as a file.
 */
export function buildAdminSecret(spec: ServerSpec, options: KubernetesObjectOptions): Secret {
  return new Secret({
    metadata: { name: secretNameFor(spec.name), namespace: options.namespace, labels: labelsFor(spec) },
    type: 'kubernetes.io/basic-auth',
    data: {
      username: Buffer.from(spec.adminUser).toString('base64'),
      password: Buffer.from(spec.adminPassword).toString('base64'),
    },
  });
}

/** The StatefulSet's governing Service; headless, so `<name>.<namespace>.svc` is the pod. */
export function buildHeadlessService(spec: ServerSpec, options: KubernetesObjectOptions): Service {
  return new Service({
    metadata: { name: spec.name, namespace: options.namespace, labels: labelsFor(spec) },
    spec: {
      clusterIP: 'None',
      selector: selectorFor(spec),
      ports: [{ name: 'postgres', port: POSTGRES_PORT, targetPort: 'postgres', protocol: 'TCP' }],
    },
  });
}

function selectorFor(spec: ServerSpec): Record<string, string> {
  return { [K8S_LABELS.instance]: spec.name, [K8S_LABELS.serverId]: spec.serverId };
}

function pgIsReady(spec: ServerSpec, over: Partial<IProbe>): IProbe {
  return {
    // Accepting connections, without a password: the platform's own readiness is a real login.
    exec: { command: ['pg_isready', '-U', spec.adminUser, '-d', 'postgres', '-h', '127.0.0.1'] },
    periodSeconds: 10,
    timeoutSeconds: 5,
    ...over,
  };
}

export function buildStatefulSet(spec: ServerSpec, options: KubernetesObjectOptions): StatefulSet {
  const labels = labelsFor(spec);
  const limits = effectiveLimits(spec, options);
  const uid = options.runAsUser;
  const container: IContainer = {
    name: 'postgres',
    image: options.image,
    args: postgresArgs(kubernetesSettings(spec, options)),
    env: [
      { name: 'POSTGRES_USER', value: spec.adminUser },
      // The password is a mounted file; the object names the secret, never the value.
      { name: 'POSTGRES_PASSWORD_FILE', value: `${SECRET_MOUNT}/password` },
      { name: 'POSTGRES_DB', value: 'postgres' },
      { name: 'PGDATA', value: PGDATA },
    ],
    ports: [{ name: 'postgres', containerPort: POSTGRES_PORT, protocol: 'TCP' }],
    resources: resources(spec, options),
    securityContext: {
      runAsNonRoot: true,
      runAsUser: uid,
      runAsGroup: uid,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    },
    // initdb and crash recovery may take a while: the startup probe holds the others off.
    startupProbe: pgIsReady(spec, { periodSeconds: 5, failureThreshold: 120 }),
    readinessProbe: pgIsReady(spec, { failureThreshold: 3 }),
    livenessProbe: pgIsReady(spec, { failureThreshold: 6 }),
    volumeMounts: [
      { name: 'data', mountPath: PGDATA_MOUNT },
      { name: 'admin', mountPath: SECRET_MOUNT, readOnly: true },
      { name: 'dshm', mountPath: '/dev/shm' },
    ],
  };
  return new StatefulSet({
    metadata: { name: spec.name, namespace: options.namespace, labels },
    spec: {
      replicas: 1,
      serviceName: spec.name,
      selector: { matchLabels: selectorFor(spec) },
      podManagementPolicy: 'OrderedReady',
      updateStrategy: { type: 'RollingUpdate' },
      persistentVolumeClaimRetentionPolicy: {
        whenDeleted: options.volumeRemoval === 'delete' ? 'Delete' : 'Retain',
        whenScaled: 'Retain',
      },
      template: {
        metadata: { labels },
        spec: {
          securityContext: {
            runAsNonRoot: true,
            runAsUser: uid,
            runAsGroup: uid,
            fsGroup: uid,
            fsGroupChangePolicy: 'OnRootMismatch',
            seccompProfile: { type: 'RuntimeDefault' },
          },
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: 60,
          ...(Object.keys(options.nodeSelector).length ? { nodeSelector: { ...options.nodeSelector } } : {}),
          containers: [container],
          volumes: [
            {
              name: 'admin',
              secret: {
                secretName: secretNameFor(spec.name),
                items: [{ key: 'password', path: 'password' }],
                defaultMode: 0o440,
              },
            },
            // The container runtime's default /dev/shm (64 MB) is too small for parallel queries.
            {
              name: 'dshm',
              emptyDir: {
                medium: 'Memory',
                sizeLimit: mebibytes(Math.max(64, Math.floor((limits.memoryMb ?? 1024) / 4))),
              },
            },
          ],
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: 'data', labels },
          spec: {
            accessModes: ['ReadWriteOnce'],
            ...(options.storageClass ? { storageClassName: options.storageClass } : {}),
            resources: { requests: { storage: `${limits.storageGb}Gi` } },
          },
        },
      ],
    },
  });
}

/** cnpg mode: one CloudNativePG Cluster (one instance); the operator makes pods, PVCs, Services. */
export function buildCnpgCluster(spec: ServerSpec, options: KubernetesObjectOptions): Cluster {
  const labels = labelsFor(spec);
  const limits = effectiveLimits(spec, options);
  return new Cluster({
    metadata: { name: spec.name, namespace: options.namespace, labels },
    spec: {
      instances: 1,
      imageName: options.image,
      inheritedMetadata: { labels },
      postgresql: { parameters: kubernetesSettings(spec, options) },
      // The platform's admin is a managed role of its own, not the operator's `postgres` superuser.
      enableSuperuserAccess: false,
      managed: {
        roles: [
          {
            name: spec.adminUser,
            ensure: 'present',
            login: true,
            superuser: true,
            passwordSecret: { name: secretNameFor(spec.name) },
          },
        ],
      },
      storage: {
        size: `${limits.storageGb}Gi`,
        ...(options.storageClass ? { storageClass: options.storageClass } : {}),
      },
      resources: resources(spec, options),
      ...(Object.keys(options.nodeSelector).length
        ? { affinity: { nodeSelector: { ...options.nodeSelector } } }
        : {}),
      primaryUpdateStrategy: 'unsupervised',
    },
  });
}

// --- Reading pods ------------------------------------------------------------------------------

interface PodLike {
  metadata?: { name?: string };
  status?: {
    phase?: string;
    conditions?: { type?: string; status?: string; reason?: string; message?: string }[];
    containerStatuses?: {
      name?: string;
      ready?: boolean;
      restartCount?: number;
      state?: {
        waiting?: { reason?: string; message?: string };
        terminated?: { exitCode?: number; reason?: string };
      };
      lastState?: { terminated?: { exitCode?: number; reason?: string; message?: string } };
    }[];
  };
}

export interface PodSummary {
  ready: boolean;
  reason?: string;
  terminal: boolean;
}

const NEVER_PULLS = new Set(['InvalidImageName', 'ErrImageNeverPull']);
const PULL_FAILS = new Set(['ErrImagePull', 'ImagePullBackOff']);
/** A pull that failed because the image is not there (a registry being down is not among these). */
const IMAGE_MISSING =
  /not found|manifest unknown|pull access denied|repository does not exist|no such image/i;

/**
 * Why the server's pod is not ready. Terminal: its image cannot be had, or its container keeps
 * exiting (at least `crashLoopAfter` restarts while in CrashLoopBackOff).
 */
export function summarizePods(pods: unknown[], crashLoopAfter: number): PodSummary {
  const list = pods as PodLike[];
  if (list.length === 0) return { ready: false, reason: 'no pod yet', terminal: false };
  let reason: string | undefined;
  let terminal = false;
  for (const pod of list) {
    const name = pod.metadata?.name ?? 'pod';
    const statuses = pod.status?.containerStatuses ?? [];
    if (statuses.length > 0 && statuses.every((c) => c.ready)) return { ready: true, terminal: false };
    for (const c of statuses) {
      const waiting = c.state?.waiting;
      const last = c.lastState?.terminated;
      if (waiting?.reason) {
        const restarts = c.restartCount ?? 0;
        const exit = last ? `; last exit code ${last.exitCode ?? '?'} (${last.reason ?? 'terminated'})` : '';
        reason = `pod ${name}: ${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}${restarts ? `; restarted ${restarts} times` : ''}${exit}`;
        if (NEVER_PULLS.has(waiting.reason)) terminal = true;
        if (PULL_FAILS.has(waiting.reason) && IMAGE_MISSING.test(waiting.message ?? '')) terminal = true;
        if (waiting.reason === 'CrashLoopBackOff' && restarts >= crashLoopAfter) terminal = true;
      }
    }
    const unschedulable = pod.status?.conditions?.find(
      (c) => c.type === 'PodScheduled' && c.status === 'False',
    );
    if (!reason && unschedulable) {
      reason =
        `pod ${name}: not scheduled: ${unschedulable.reason ?? ''} ${unschedulable.message ?? ''}`.trim();
    }
    if (!reason) reason = `pod ${name}: ${pod.status?.phase ?? 'Pending'}, not ready`;
  }
  return { ready: false, reason, terminal };
}

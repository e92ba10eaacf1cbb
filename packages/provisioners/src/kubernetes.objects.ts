// What the kubernetes driver asks the API server for, as pure functions of a server spec and the
// driver's options, built with kubernetes-models so each object validates against the
// Kubernetes (and CloudNativePG) schema before it is sent. Here: what both modes share; each mode's
// own objects are kubernetes.statefulset.ts and kubernetes.cnpg.ts. No I/O; kubernetes.ts does the calls.
import type { IResourceRequirements } from 'kubernetes-models/v1/ResourceRequirements';
import { Secret } from 'kubernetes-models/v1/Secret';
import { MANAGED_BY, PermanentProvisionError, type ServerSpec } from './provisioner';
import { tlsHbaConf } from './tls';
import { tunedSettings, validateSettings } from './tuning';

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
/**
 * Pods are `<name>-0` and carry a `<name>-<10 char hash>` revision label of at most 63
 * characters; CNPG adds `-rw`, `-1`, … Fifty leaves room for all of them.
 */
const NAME_RE = /^[a-z][a-z0-9-]{0,49}$/;
const SERVER_ID_RE = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;
const USER_RE = /^[a-z_][a-z0-9_]{0,62}$/;

export const secretNameFor = (name: string) => `${name}-admin`;
/** statefulset mode: the server's TLS certificate and key (kubernetes.io/tls) and its pg_hba.conf. */
export const tlsSecretNameFor = (name: string) => `${name}-tls`;

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
export const mebibytes = (mb: number) => `${mb}Mi`;

export function resources(spec: ServerSpec, options: KubernetesObjectOptions): IResourceRequirements {
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

/**
 * statefulset mode, a server with TLS: a kubernetes.io/tls Secret (tls.crt, tls.key) that also
 * carries the pg_hba.conf the server runs with (tenant roles over TLS only), mounted as files.
 */
export function buildTlsSecret(spec: ServerSpec, options: KubernetesObjectOptions): Secret | undefined {
  if (!spec.tls) return undefined;
  return new Secret({
    metadata: { name: tlsSecretNameFor(spec.name), namespace: options.namespace, labels: labelsFor(spec) },
    type: 'kubernetes.io/tls',
    data: {
      'tls.crt': Buffer.from(spec.tls.certPem).toString('base64'),
      'tls.key': Buffer.from(spec.tls.keyPem).toString('base64'),
      'pg_hba.conf': Buffer.from(tlsHbaConf(spec.adminUser)).toString('base64'),
    },
  });
}

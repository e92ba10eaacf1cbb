// What the swarm driver asks Docker for, as pure functions of a server spec and the driver's
// options: the service spec, the admin-password secret, labels and names. No I/O here; swarm.ts
// does the calls, and how a service's task list reads is swarm.tasks.ts.
import type Docker from 'dockerode';
import { MANAGED_BY, PermanentProvisionError, type ServerSpec } from './provisioner';
import { tlsHbaConf, tlsSettings } from './tls';
import { postgresArgs, tunedSettings, validateSettings } from './tuning';

export const SWARM_LABELS = {
  managedBy: 'tenantdb.managed-by',
  /** Which tenantdb deployment owns the object: several may share one swarm. */
  fleet: 'tenantdb.fleet',
  serverId: 'tenantdb.server-id',
  serverName: 'tenantdb.server-name',
  serverType: 'tenantdb.server-type',
} as const;

export type PublishMode = 'host' | 'ingress' | 'none';

export interface SwarmObjectOptions {
  /** Pinned as configured, e.g. postgres:16.4-alpine (or with @sha256:…). */
  image: string;
  fleet: string;
  /**
   * host: the task's port is published on the node it runs on (the worker connects to that node);
   * ingress: published on every node through the routing mesh; none: reachable only over `network`.
   */
  publishMode: PublishMode;
  /** Overlay network the service joins (its name is then resolvable on it). */
  network?: string;
  /** Swarm placement constraints, e.g. node.labels.tenantdb.postgres==true. */
  constraints: string[];
  /** Defaults for servers whose row has no limit of its own. */
  limits: { cpus?: number; memoryMb?: number };
  reservations: { cpus?: number; memoryMb?: number };
  restartDelayMs: number;
  volumeDriver: string;
  /**
   * The uid Postgres runs as in the image (70 in -alpine images, 999 in Debian ones): it must own
   * the TLS key file it reads. Defaults to 70, the default image's.
   */
  postgresUid?: number;
}

export const POSTGRES_PORT = 5432;
const PGDATA_MOUNT = '/var/lib/postgresql/data';
/** A subdirectory, so initdb never meets a volume root it does not own (lost+found on block volumes). */
const PGDATA = `${PGDATA_MOUNT}/pgdata`;
const SECRET_FILE = 'tenantdb-admin-password';
const NAME_RE = /^[a-z][a-z0-9-]{0,62}$/;
/** Secret names are at most 64 characters: `tenantdb-admin-` (15) plus the id. */
const SERVER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$/;
const USER_RE = /^[a-z_][a-z0-9_]{0,62}$/;
const NANO = 1_000_000_000;
const MB = 1024 * 1024;

export const secretNameFor = (serverId: string) => `tenantdb-admin-${serverId}`;

/** The TLS files of a server (ServerSpec.tls), each a Docker secret: key, certificate, pg_hba. */
export const TLS_SECRETS = {
  key: { prefix: 'tenantdb-tlsk-', file: 'tenantdb-tls-key' },
  cert: { prefix: 'tenantdb-tlsc-', file: 'tenantdb-tls-cert' },
  hba: { prefix: 'tenantdb-hba-', file: 'tenantdb-pg-hba' },
} as const;
export type TlsSecretRole = keyof typeof TLS_SECRETS;
export type SecretRef = { id: string; name: string };

/** The Docker secrets a TLS server needs, by role; none without spec.tls. */
export function buildTlsSecretSpecs(spec: ServerSpec, fleet: string) {
  if (!spec.tls) return [];
  const content: Record<TlsSecretRole, string> = {
    key: spec.tls.keyPem,
    cert: spec.tls.certPem,
    hba: tlsHbaConf(spec.adminUser),
  };
  return (Object.keys(TLS_SECRETS) as TlsSecretRole[]).map((role) => ({
    role,
    spec: {
      Name: `${TLS_SECRETS[role].prefix}${spec.serverId}`,
      Labels: labelsFor(fleet, spec),
      Data: Buffer.from(content[role], 'utf8').toString('base64'),
    },
  }));
}
export const volumeNameFor = (serverId: string) => `tenantdb-data-${serverId}`;

export function labelsFor(fleet: string, spec: Pick<ServerSpec, 'serverId' | 'name' | 'serverType'>) {
  return {
    [SWARM_LABELS.managedBy]: MANAGED_BY,
    [SWARM_LABELS.fleet]: fleet,
    [SWARM_LABELS.serverId]: spec.serverId,
    [SWARM_LABELS.serverName]: spec.name,
    [SWARM_LABELS.serverType]: spec.serverType,
  };
}

/** Docker label filters selecting this fleet's objects (optionally one server's). */
export function labelFilter(fleet: string, serverName?: string): string[] {
  const filter = [`${SWARM_LABELS.managedBy}=${MANAGED_BY}`, `${SWARM_LABELS.fleet}=${fleet}`];
  if (serverName) filter.push(`${SWARM_LABELS.serverName}=${serverName}`);
  return filter;
}

export function isManaged(labels: Record<string, string> | undefined, fleet: string): boolean {
  return labels?.[SWARM_LABELS.managedBy] === MANAGED_BY && labels[SWARM_LABELS.fleet] === fleet;
}

export function validateRef(ref: string): void {
  if (!NAME_RE.test(ref))
    throw new PermanentProvisionError(`invalid swarm service name ${JSON.stringify(ref)}`);
}

export function validateSwarmSpec(spec: ServerSpec): void {
  validateRef(spec.name);
  if (!SERVER_ID_RE.test(spec.serverId))
    throw new PermanentProvisionError(`invalid server id ${JSON.stringify(spec.serverId)}`);
  if (!USER_RE.test(spec.adminUser))
    throw new PermanentProvisionError(`invalid admin user ${JSON.stringify(spec.adminUser)}`);
  if (!spec.adminPassword) throw new PermanentProvisionError('an admin password is required');
  if (!Number.isInteger(spec.maxInstances) || spec.maxInstances < 1)
    throw new PermanentProvisionError(`invalid maxInstances ${spec.maxInstances}`);
  if (
    spec.connectionLimit !== undefined &&
    (!Number.isInteger(spec.connectionLimit) || spec.connectionLimit < 1)
  )
    throw new PermanentProvisionError(`invalid connectionLimit ${spec.connectionLimit}`);
  validateSettings(spec.settings ?? {});
}

/** The limits a server runs with: its own, else the driver's defaults. */
export function effectiveLimits(spec: ServerSpec, options: SwarmObjectOptions) {
  return {
    cpus: spec.cpuLimit ?? options.limits.cpus,
    memoryMb: spec.memoryLimitMb ?? options.limits.memoryMb,
  };
}

/** The settings the server starts with (what `SHOW max_connections` will answer). */
export function swarmSettings(spec: ServerSpec, options: SwarmObjectOptions): Record<string, string> {
  return tunedSettings({ ...spec, memoryLimitMb: effectiveLimits(spec, options).memoryMb ?? null });
}

export function buildSecretSpec(spec: ServerSpec, fleet: string) {
  return {
    Name: secretNameFor(spec.serverId),
    Labels: labelsFor(fleet, spec),
    Data: Buffer.from(spec.adminPassword, 'utf8').toString('base64'),
  };
}

export interface ServiceInputs {
  spec: ServerSpec;
  options: SwarmObjectOptions;
  secret: SecretRef;
  /** The TLS secrets by role (see buildTlsSecretSpecs), when the spec has TLS. */
  tlsSecrets?: Record<TlsSecretRole, SecretRef>;
  /** Host mode: the port published on the node (fixed, so a restarted task keeps it). */
  publishedPort?: number;
}

export function buildServiceSpec({
  spec,
  options,
  secret,
  tlsSecrets,
  publishedPort,
}: ServiceInputs): Docker.ServiceSpec {
  if (spec.tls && !tlsSecrets) throw new Error('a TLS server needs its TLS secrets');
  const uid = String(options.postgresUid ?? 70);
  const tls = spec.tls && tlsSecrets ? tlsSecrets : undefined;
  const tlsFiles = tls
    ? (Object.keys(TLS_SECRETS) as TlsSecretRole[]).map((role) => ({
        SecretID: tls[role].id,
        SecretName: tls[role].name,
        // Postgres refuses a key file that is not its own with mode 0600; the others are public.
        File:
          role === 'key'
            ? { Name: TLS_SECRETS[role].file, UID: uid, GID: uid, Mode: 0o600 }
            : { Name: TLS_SECRETS[role].file, UID: '0', GID: '0', Mode: 0o444 },
      }))
    : [];
  const settings = {
    ...swarmSettings(spec, options),
    ...(tls
      ? {
          ...tlsSettings({
            cert: `/run/secrets/${TLS_SECRETS.cert.file}`,
            key: `/run/secrets/${TLS_SECRETS.key.file}`,
          }),
          hba_file: `/run/secrets/${TLS_SECRETS.hba.file}`,
        }
      : {}),
  };
  const labels = labelsFor(options.fleet, spec);
  const limits = effectiveLimits(spec, options);
  const reservation = (wanted: number | undefined, limit: number | undefined) =>
    wanted === undefined ? undefined : limit === undefined ? wanted : Math.min(wanted, limit);
  const cpuReservation = reservation(options.reservations.cpus, limits.cpus);
  const memoryReservation = reservation(options.reservations.memoryMb, limits.memoryMb);
  if (options.publishMode === 'host' && publishedPort === undefined)
    throw new Error('host-mode publishing needs a published port');
  if (options.publishMode === 'none' && !options.network)
    throw new PermanentProvisionError('publish mode "none" needs a network to reach the server on');

  return {
    Name: spec.name,
    Labels: labels,
    Mode: { Replicated: { Replicas: 1 } },
    TaskTemplate: {
      ContainerSpec: {
        Image: options.image,
        Labels: labels,
        Args: postgresArgs(settings),
        Env: [
          `POSTGRES_USER=${spec.adminUser}`,
          // The password reaches the container only as a file; the spec names the file, not the value.
          `POSTGRES_PASSWORD_FILE=/run/secrets/${SECRET_FILE}`,
          'POSTGRES_DB=postgres',
          `PGDATA=${PGDATA}`,
        ],
        Secrets: [
          {
            SecretID: secret.id,
            SecretName: secret.name,
            File: { Name: SECRET_FILE, UID: '0', GID: '0', Mode: 0o400 },
          },
          ...tlsFiles,
        ],
        Mounts: [
          {
            Type: 'volume',
            Source: volumeNameFor(spec.serverId),
            Target: PGDATA_MOUNT,
            VolumeOptions: {
              NoCopy: false,
              Labels: labels,
              DriverConfig: { Name: options.volumeDriver, Options: {} },
            },
          },
          // Docker's default /dev/shm is 64 MB: too little for parallel queries' dynamic shared memory.
          {
            Type: 'tmpfs',
            Source: '',
            Target: '/dev/shm',
            TmpfsOptions: { SizeBytes: shmBytes(limits.memoryMb), Mode: 0o1777 },
          },
        ],
        // Fast shutdown: clients are disconnected, the server stops cleanly within the grace period.
        StopSignal: 'SIGINT',
        StopGracePeriod: 60 * NANO,
      },
      Resources: {
        Limits: {
          ...(limits.cpus === undefined ? {} : { NanoCPUs: Math.round(limits.cpus * NANO) }),
          ...(limits.memoryMb === undefined ? {} : { MemoryBytes: limits.memoryMb * MB }),
        },
        Reservations: {
          ...(cpuReservation === undefined ? {} : { NanoCPUs: Math.round(cpuReservation * NANO) }),
          ...(memoryReservation === undefined ? {} : { MemoryBytes: memoryReservation * MB }),
        },
      },
      // Restart whatever the exit, after a pause, with no attempt limit: a limit leaves a server
      // down for good after a few crashes (say a node reboot loop). A server that never comes up
      // while being provisioned is removed by the provisioning job instead, so this cannot loop forever.
      RestartPolicy: {
        Condition: 'any',
        Delay: options.restartDelayMs * 1_000_000,
        MaxAttempts: 0,
        Window: 0,
      },
      Placement: { Constraints: [...options.constraints] },
      ...(options.network ? { Networks: [{ Target: options.network, Aliases: [spec.name] }] } : {}),
    },
    // Never two postgres processes on one data volume: stop the old task before starting a new one.
    UpdateConfig: { Parallelism: 1, Order: 'stop-first', FailureAction: 'pause' },
    EndpointSpec: { Mode: 'vip', Ports: endpointPorts(options.publishMode, publishedPort) },
  };
}

function endpointPorts(mode: PublishMode, publishedPort: number | undefined): Docker.PortConfig[] {
  if (mode === 'none') return [];
  if (mode === 'ingress') return [{ Protocol: 'tcp', TargetPort: POSTGRES_PORT, PublishMode: 'ingress' }];
  return [{ Protocol: 'tcp', TargetPort: POSTGRES_PORT, PublishedPort: publishedPort, PublishMode: 'host' }];
}

function shmBytes(memoryMb: number | undefined): number {
  return Math.max(64, Math.floor((memoryMb ?? 1024) / 4)) * MB;
}

/** The service spec with another host-mode port (a port someone else holds on the node). */
export function withPublishedPort(spec: Docker.ServiceSpec, port: number): Docker.ServiceSpec {
  return { ...spec, EndpointSpec: { ...spec.EndpointSpec, Ports: endpointPorts('host', port) } };
}

/** The service spec constrained to one node: its data volume lives there. */
export function withNodePin(spec: Docker.ServiceSpec, nodeId: string): Docker.ServiceSpec {
  const template = spec.TaskTemplate as Docker.ContainerTaskSpec;
  const constraints = (template.Placement?.Constraints ?? []).filter((c) => !c.startsWith('node.id=='));
  return {
    ...spec,
    TaskTemplate: {
      ...template,
      Placement: { ...template.Placement, Constraints: [...constraints, `node.id==${nodeId}`] },
    },
  };
}

export function pinnedNode(spec: Docker.ServiceSpec | undefined): string | undefined {
  const constraints = (spec?.TaskTemplate as Docker.ContainerTaskSpec | undefined)?.Placement?.Constraints;
  return constraints?.find((c) => c.startsWith('node.id=='))?.slice('node.id=='.length);
}

export function hostPortOf(spec: Docker.ServiceSpec | undefined): number | undefined {
  return spec?.EndpointSpec?.Ports?.find((p) => p.PublishMode === 'host' && p.TargetPort === POSTGRES_PORT)
    ?.PublishedPort;
}

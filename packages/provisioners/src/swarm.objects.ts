// What the swarm driver asks Docker for, as pure functions of a server spec and the driver's
// options: the service spec, the admin-password secret, labels and names, and how a service's
// task list reads (running, starting, or failed for good). No I/O here; swarm.ts does the calls.
import type Docker from 'dockerode';
import { MANAGED_BY, PermanentProvisionError, type ServerSpec } from './provisioner';
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
  secret: { id: string; name: string };
  /** Host mode: the port published on the node (fixed, so a restarted task keeps it). */
  publishedPort?: number;
}

export function buildServiceSpec({
  spec,
  options,
  secret,
  publishedPort,
}: ServiceInputs): Docker.ServiceSpec {
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
        Args: postgresArgs(swarmSettings(spec, options)),
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

// --- Reading tasks -----------------------------------------------------------------------------

export interface TaskView {
  id: string;
  state: string;
  desiredState: string;
  error?: string;
  message?: string;
  exitCode?: number;
  createdAt: string;
  nodeId?: string;
  containerId?: string;
  /** Host-mode port the task published on its node. */
  publishedPort?: number;
}

interface RawTask {
  ID?: string;
  NodeID?: string;
  DesiredState?: string;
  CreatedAt?: string;
  Status?: {
    State?: string;
    Err?: string;
    Message?: string;
    ContainerStatus?: { ContainerID?: string; ExitCode?: number };
    PortStatus?: { Ports?: { TargetPort?: number; PublishedPort?: number; PublishMode?: string }[] };
  };
}

export function toTaskView(raw: unknown): TaskView {
  const t = raw as RawTask;
  const view: TaskView = {
    id: t.ID ?? '',
    state: t.Status?.State ?? 'unknown',
    desiredState: t.DesiredState ?? 'unknown',
    createdAt: t.CreatedAt ?? '',
  };
  if (t.Status?.Err) view.error = t.Status.Err;
  if (t.Status?.Message) view.message = t.Status.Message;
  if (t.NodeID) view.nodeId = t.NodeID;
  const container = t.Status?.ContainerStatus;
  if (container?.ContainerID) view.containerId = container.ContainerID;
  if (typeof container?.ExitCode === 'number' && container.ExitCode !== 0) view.exitCode = container.ExitCode;
  const port = t.Status?.PortStatus?.Ports?.find((p) => p.TargetPort === POSTGRES_PORT && p.PublishedPort);
  if (port?.PublishedPort) view.publishedPort = port.PublishedPort;
  return view;
}

export interface TaskSummary {
  /** The task serving the server, if one runs. */
  running?: TaskView;
  /** The newest task (what is happening now when nothing runs). */
  latest?: TaskView;
  /** The task the reason is about (the newest that failed, unless the newest says more). */
  failed?: TaskView;
  /** Why nothing runs, in the orchestrator's words. */
  reason?: string;
  /** Will not start without a change (see ObjectState.terminal). */
  terminal: boolean;
  /** The host-mode port is held by someone else on the node: another port would help. */
  portConflict: boolean;
  /**
   * The port that conflict is on, when the orchestrator says (its message, or the task's port):
   * a task of an earlier spec stays in the list after the port is changed.
   */
  conflictPort?: number;
}

const FAILED_STATES = new Set(['failed', 'rejected']);
/** A server should run until removed: a task that completed (exit 0) has stopped too. */
const EXITED_STATES = new Set(['failed', 'rejected', 'complete']);
const STARTING_STATES = new Set(['new', 'pending', 'assigned', 'accepted', 'preparing', 'ready', 'starting']);
/** Pull failures that another attempt will not fix (a registry being down is not among them). */
const IMAGE_ERROR =
  /no such image|manifest unknown|manifest for .* not found|pull access denied|repository does not exist|invalid reference format/i;
const PORT_CONFLICT = /address already in use|port is already allocated|host-mode port already in use/i;

/**
 * Reads a service's tasks (newest first after sorting). Terminal: the newest task was rejected
 * because its image cannot be had, or the last `crashLoopAfter` tasks all failed.
 */
export function summarizeTasks(tasks: TaskView[], crashLoopAfter: number): TaskSummary {
  const sorted = [...tasks].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  const running = sorted.find((t) => t.state === 'running' && t.desiredState === 'running');
  const latest = sorted[0];
  if (running) return { running, latest, terminal: false, portConflict: false };
  if (!latest) return { reason: 'no task scheduled yet', terminal: false, portConflict: false };

  // Count the exits since the last task that ran fine; the replacement being started now (if
  // any) is skipped over, it has not had its chance yet.
  let failedInARow = 0;
  for (const t of sorted) {
    if (EXITED_STATES.has(t.state)) failedInARow++;
    else if (failedInARow > 0 || !STARTING_STATES.has(t.state)) break;
  }
  const newestFailure = sorted.find((t) => EXITED_STATES.has(t.state));
  // A new task still starting says little; the failure before it says why it is starting again.
  const told = latest.error || !newestFailure ? latest : newestFailure;
  const what = told.error ?? told.message ?? told.state;
  let reason = `task ${told.state}${told.exitCode === undefined ? '' : ` (exit code ${told.exitCode})`}: ${what}`;
  if (failedInARow > 1) reason = `${failedInARow} tasks failed in a row; last: ${reason}`;

  const imageMissing = FAILED_STATES.has(told.state) && IMAGE_ERROR.test(told.error ?? '');
  const portConflict = PORT_CONFLICT.test(told.error ?? '');
  const summary: TaskSummary = {
    latest,
    failed: told,
    reason,
    terminal: imageMissing || failedInARow >= crashLoopAfter,
    portConflict,
  };
  const conflictPort = portConflict ? (portInMessage(told.error ?? '') ?? told.publishedPort) : undefined;
  if (conflictPort !== undefined) summary.conflictPort = conflictPort;
  return summary;
}

/** "listen tcp4 0.0.0.0:26500: bind: …", "Bind for 0.0.0.0:26500 failed: …", "[::]:26500". */
const ADDRESS_WITH_PORT = /(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:]*\]):(\d{1,5})\b/i;

function portInMessage(message: string): number | undefined {
  const port = Number(ADDRESS_WITH_PORT.exec(message)?.[1]);
  return Number.isInteger(port) && port > 0 && port <= 65_535 ? port : undefined;
}

/**
 * Whether a summary's port conflict is about the port the service publishes now, so that another
 * port would help. The failed task of an earlier spec stays in the task list after the port is
 * changed; its conflict was on the old port. When the orchestrator names no port (the scheduler's
 * "host-mode port already in use on 1 node"), a task created before the spec last changed is
 * taken for an earlier spec's.
 */
export function conflictOnCurrentPort(
  summary: TaskSummary,
  current: { port: number | undefined; specChangedAt?: string | undefined },
): boolean {
  if (!summary.portConflict || current.port === undefined) return false;
  if (summary.conflictPort !== undefined) return summary.conflictPort === current.port;
  const failedAt = Date.parse(summary.failed?.createdAt ?? '');
  const changedAt = Date.parse(current.specChangedAt ?? '');
  return Number.isNaN(failedAt) || Number.isNaN(changedAt) || failedAt >= changedAt;
}

/** Docker's multiplexed log stream (8-byte frame headers) as text. */
export function demuxDockerLog(buf: Buffer): string {
  const out: Buffer[] = [];
  let i = 0;
  while (i + 8 <= buf.length) {
    const type = buf[i];
    const size = buf.readUInt32BE(i + 4);
    if ((type !== 1 && type !== 2) || buf[i + 1] !== 0 || buf[i + 2] !== 0 || buf[i + 3] !== 0) {
      return buf.toString('utf8'); // not multiplexed (a TTY container)
    }
    out.push(buf.subarray(i + 8, i + 8 + size));
    i += 8 + size;
  }
  return Buffer.concat(out).toString('utf8');
}

/** The last FATAL/PANIC line of a Postgres log: why a server exited, without anything else it logged. */
export function lastFatalLine(log: string): string | undefined {
  const line = log
    .split('\n')
    .reverse()
    .find((l) => /\b(FATAL|PANIC):/.test(l));
  // From the severity on: the timestamp and pid prefix say nothing here.
  return line?.slice(line.search(/\b(FATAL|PANIC):/)).trim();
}

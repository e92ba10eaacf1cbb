// The `swarm` driver: one replicated Docker Swarm service per server (dockerode), labelled
// `tenantdb.*`, with its admin password in a Docker secret, its data in a volume of its own and a
// restart policy without an attempt limit. What the service looks like is swarm.objects.ts; this
// file talks to Docker.
//
// Like the local driver it adopts what an earlier attempt made (a worker killed mid-create: the
// retry finds the secret and the service by name and carries on) and never touches an object
// that does not carry this fleet's labels.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { KeyedMutex } from './mutex';
import {
  type ManagedObject,
  type ObjectState,
  PermanentProvisionError,
  type ProvisionedServer,
  type Provisioner,
  type ServerSpec,
} from './provisioner';
import {
  buildSecretSpec,
  buildServiceSpec,
  hostPortOf,
  isManaged,
  labelFilter,
  POSTGRES_PORT,
  pinnedNode,
  SWARM_LABELS,
  type SwarmObjectOptions,
  secretNameFor,
  validateRef,
  validateSwarmSpec,
  withNodePin,
  withPublishedPort,
} from './swarm.objects';
import {
  conflictOnCurrentPort,
  demuxDockerLog,
  lastFatalLine,
  summarizeTasks,
  type TaskSummary,
  type TaskView,
  toTaskView,
} from './swarm.tasks';

export interface SwarmProvisionerOptions extends SwarmObjectOptions {
  /** A dockerode client, or where the Docker API of a swarm manager is. */
  docker: Docker | DockerEndpoint;
  /**
   * The address the control plane (and tenants) use for published ports. Unset: the address of
   * the node the task runs on (host mode) — for ingress, any node's address works.
   */
  connectHost?: string;
  /** Host-mode ports are taken from this range (fixed per service, so a restart keeps its port). */
  portRange: { from: number; to: number };
  /**
   * Constrain each service to the node its first task ran on: with node-local volumes a task
   * rescheduled elsewhere would start on an empty data directory.
   */
  pinToNode: boolean;
  /** On remove: delete the data volume (on the engine the driver talks to) or keep it. */
  volumeRemoval: 'delete' | 'keep';
  /** How long create() waits for the first task to run. */
  startTimeoutMs: number;
  /** Consecutive task exits that make a starting server terminal (see ObjectState.terminal). */
  crashLoopAfter?: number;
}

export interface DockerEndpoint {
  /** unix:///var/run/docker.sock, tcp://manager:2376 (TLS when tlsDir is set). */
  url: string;
  /** Directory with ca.pem, cert.pem and key.pem (as DOCKER_CERT_PATH). */
  tlsDir?: string;
}

export interface SwarmProvisioner extends Provisioner {
  readonly driver: 'swarm';
  readonly docker: Docker;
}

const POLL_MS = 500;
const VOLUME_RELEASE_MS = 60_000;
const PORT_REPICKS = 3;

export function dockerClient(endpoint: DockerEndpoint): Docker {
  const url = new URL(endpoint.url);
  if (url.protocol === 'unix:') return new Docker({ socketPath: url.pathname });
  if (url.protocol !== 'tcp:' && url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Error(`unsupported Docker endpoint ${endpoint.url}: use unix:// or tcp://`);
  const tls = endpoint.tlsDir
    ? {
        ca: readFileSync(join(endpoint.tlsDir, 'ca.pem')),
        cert: readFileSync(join(endpoint.tlsDir, 'cert.pem')),
        key: readFileSync(join(endpoint.tlsDir, 'key.pem')),
      }
    : {};
  const secure = url.protocol === 'https:' || Boolean(endpoint.tlsDir);
  return new Docker({
    host: url.hostname,
    port: Number(url.port || (secure ? 2376 : 2375)),
    protocol: secure ? 'https' : 'http',
    ...tls,
  });
}

export function createSwarmProvisioner(opts: SwarmProvisionerOptions): SwarmProvisioner {
  const docker = opts.docker instanceof Docker ? opts.docker : dockerClient(opts.docker);
  const crashLoopAfter = opts.crashLoopAfter ?? 3;
  const perServer = new KeyedMutex();
  /** Host ports picked by creates in flight in this process (not yet visible in any service). */
  const portsInFlight = new Set<number>();

  async function findService(name: string): Promise<Docker.Service | undefined> {
    try {
      return (await docker.getService(name).inspect()) as Docker.Service;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }

  function assertOurs(service: Docker.Service, spec: ServerSpec): void {
    const labels = service.Spec?.Labels;
    if (!isManaged(labels, opts.fleet)) {
      throw new PermanentProvisionError(
        `swarm service ${spec.name} exists and is not managed by this tenantdb fleet; refusing to use it`,
      );
    }
    if (labels?.[SWARM_LABELS.serverId] !== spec.serverId) {
      throw new PermanentProvisionError(
        `swarm service ${spec.name} belongs to server ${labels?.[SWARM_LABELS.serverId]}, not ${spec.serverId}`,
      );
    }
  }

  async function findSecret(name: string): Promise<Docker.Secret | undefined> {
    // The name filter matches prefixes too: compare exactly.
    const secrets = await docker.listSecrets({ filters: { name: [name] } });
    return secrets.find((s) => s.Spec?.Name === name);
  }

  /** The admin-password secret: created once; secrets are immutable, so a retry reuses it. */
  async function ensureSecret(spec: ServerSpec): Promise<{ id: string; name: string }> {
    const name = secretNameFor(spec.serverId);
    const check = (secret: Docker.Secret) => {
      const labels = secret.Spec?.Labels;
      if (!isManaged(labels, opts.fleet) || labels?.[SWARM_LABELS.serverId] !== spec.serverId) {
        throw new PermanentProvisionError(
          `secret ${name} exists and is not this server's; refusing to use it`,
        );
      }
      return { id: secret.ID, name };
    };
    const existing = await findSecret(name);
    if (existing) return check(existing);
    try {
      const created = (await docker.createSecret(buildSecretSpec(spec, opts.fleet))) as { id: string };
      return { id: created.id, name };
    } catch (err) {
      if (statusOf(err) !== 409) throw dockerError(err, `creating secret ${name}`);
      const raced = await findSecret(name);
      if (!raced) throw dockerError(err, `creating secret ${name}`);
      return check(raced);
    }
  }

  /**
   * A host port no other service publishes (ours or anyone's), at random so concurrent workers
   * rarely meet. The ports of `forService` itself (its spec's and what its endpoint still shows of
   * an earlier spec) are not taken: it is the one moving; `avoid` says what it must leave.
   */
  async function pickPort(avoid: number[] = [], forService?: string): Promise<number> {
    const taken = new Set<number>([...portsInFlight, ...avoid]);
    for (const s of await docker.listServices()) {
      if (forService !== undefined && s.ID === forService) continue;
      for (const p of [...(s.Spec?.EndpointSpec?.Ports ?? []), ...(s.Endpoint?.Ports ?? [])]) {
        if (p.PublishedPort) taken.add(p.PublishedPort);
      }
    }
    const free: number[] = [];
    for (let p = opts.portRange.from; p <= opts.portRange.to; p++) if (!taken.has(p)) free.push(p);
    const port = free[Math.floor(Math.random() * free.length)];
    if (port === undefined) {
      throw new PermanentProvisionError(
        `no free host port in ${opts.portRange.from}-${opts.portRange.to} for another swarm server`,
      );
    }
    return port;
  }

  async function createService(spec: ServerSpec): Promise<Docker.Service> {
    const secret = await ensureSecret(spec);
    const port = opts.publishMode === 'host' ? await pickPort() : undefined;
    if (port !== undefined) portsInFlight.add(port);
    try {
      await docker.createService(buildServiceSpec({ spec, options: opts, secret, publishedPort: port }));
    } catch (err) {
      // 409: a racing attempt for the same server made it first; adopted below like any retry.
      if (statusOf(err) !== 409) throw dockerError(err, `creating service ${spec.name}`);
    } finally {
      if (port !== undefined) portsInFlight.delete(port);
    }
    const service = await findService(spec.name);
    if (!service) throw new Error(`swarm service ${spec.name} vanished right after it was created`);
    assertOurs(service, spec);
    return service;
  }

  async function tasksOf(serviceId: string): Promise<TaskView[]> {
    const tasks = await docker.listTasks({ filters: { service: [serviceId] } });
    return tasks.map(toTaskView);
  }

  async function updateService(
    service: Docker.Service,
    change: (spec: Docker.ServiceSpec) => Docker.ServiceSpec,
  ): Promise<void> {
    // Updates carry the version they were made from; one that lost a race is made again.
    for (let attempt = 0; ; attempt++) {
      const current = (await findService(service.ID)) ?? service;
      try {
        await docker.getService(service.ID).update({
          _query: { version: current.Version?.Index },
          _body: change(current.Spec ?? {}),
        } as unknown as Docker.ServiceSpec);
        return;
      } catch (err) {
        if (attempt >= 2 || !/update out of sequence/i.test(messageOf(err))) throw err;
      }
    }
  }

  /** Why nothing runs, with the last FATAL line of the failed container when this engine has it. */
  async function explain(summary: TaskSummary): Promise<string> {
    const reason = summary.reason ?? 'not running';
    const containerId = summary.failed?.containerId;
    if (!containerId) return reason;
    try {
      const raw = (await docker.getContainer(containerId).logs({
        stdout: true,
        stderr: true,
        tail: 50,
        follow: false,
      })) as unknown as Buffer;
      const fatal = lastFatalLine(demuxDockerLog(Buffer.from(raw)));
      return fatal ? `${reason}; last log error: ${fatal}` : reason;
    } catch {
      return reason; // the container ran on another node, or is gone already
    }
  }

  /** Waits for a task to run (with its port); fails at once when it cannot start. */
  async function waitForStart(service: Docker.Service): Promise<TaskView> {
    const name = service.Spec?.Name ?? service.ID;
    const deadline = Date.now() + opts.startTimeoutMs;
    let repicks = 0;
    for (;;) {
      const summary = summarizeTasks(await tasksOf(service.ID), crashLoopAfter);
      const running = summary.running;
      if (running && (opts.publishMode !== 'host' || running.publishedPort)) return running;
      if (summary.portConflict && opts.publishMode === 'host' && repicks < PORT_REPICKS) {
        const current = (await findService(service.ID)) ?? service;
        const held = hostPortOf(current.Spec);
        // Only a conflict on the port published now: an earlier port's failed task is still listed.
        if (
          held !== undefined &&
          conflictOnCurrentPort(summary, { port: held, specChangedAt: current.UpdatedAt })
        ) {
          repicks++;
          const port = await pickPort([held], service.ID);
          await updateService(service, (spec) => withPublishedPort(spec, port));
          continue;
        }
      }
      if (summary.terminal) {
        throw new PermanentProvisionError(`swarm service ${name} cannot start: ${await explain(summary)}`);
      }
      if (Date.now() > deadline) {
        throw new Error(
          `swarm service ${name} did not start within ${opts.startTimeoutMs} ms: ${await explain(summary)}`,
        );
      }
      await sleep(POLL_MS);
    }
  }

  async function nodeAddress(nodeId: string | undefined): Promise<string> {
    if (!nodeId) throw new Error('the task has no node yet');
    const node = (await docker.getNode(nodeId).inspect()) as { Status?: { Addr?: string } };
    const addr = node.Status?.Addr;
    if (!addr || addr === '0.0.0.0') throw new Error(`node ${nodeId} reports no address`);
    return addr;
  }

  /** Where the control plane reaches the server, given the task that serves it. */
  async function addressOf(service: Docker.Service, task: TaskView): Promise<{ host: string; port: number }> {
    const name = service.Spec?.Name ?? service.ID;
    if (opts.publishMode === 'none') return { host: name, port: POSTGRES_PORT };
    const host = opts.connectHost ?? (await nodeAddress(task.nodeId));
    if (opts.publishMode === 'host') {
      const port = task.publishedPort ?? hostPortOf(service.Spec);
      if (!port) throw new Error(`swarm service ${name} publishes no host port`);
      return { host, port };
    }
    const ingress = (await findService(service.ID))?.Endpoint?.Ports?.find(
      (p) => p.TargetPort === POSTGRES_PORT && p.PublishedPort,
    );
    if (!ingress?.PublishedPort) throw new Error(`swarm service ${name} has no ingress port yet`);
    return { host, port: ingress.PublishedPort };
  }

  async function removeVolume(name: string): Promise<void> {
    // The volume is in use until the removed service's container is gone, which takes a moment.
    const deadline = Date.now() + VOLUME_RELEASE_MS;
    for (;;) {
      try {
        await docker.getVolume(name).remove();
        return;
      } catch (err) {
        const status = statusOf(err);
        if (status === 404) return;
        if (status !== 409 || Date.now() > deadline) throw dockerError(err, `removing volume ${name}`);
      }
      await sleep(POLL_MS);
    }
  }

  return {
    driver: 'swarm',
    docker,

    async create(spec): Promise<ProvisionedServer> {
      validateSwarmSpec(spec);
      return perServer.run(spec.name, async () => {
        let service = await findService(spec.name);
        if (service) assertOurs(service, spec);
        else service = await createService(spec);

        const task = await waitForStart(service);
        if (opts.pinToNode && task.nodeId && !pinnedNode(service.Spec)) {
          // Only the constraint changes and the running task satisfies it: swarm leaves it running.
          await updateService(service, (s) => withNodePin(s, task.nodeId!));
        }
        const { host, port } = await addressOf(service, task);
        const image =
          (service.Spec?.TaskTemplate as Docker.ContainerTaskSpec | undefined)?.ContainerSpec?.Image ??
          opts.image;
        return { ref: spec.name, host, port, image };
      });
    },

    async inspect(ref): Promise<ObjectState> {
      validateRef(ref);
      const service = await findService(ref);
      if (!service || !isManaged(service.Spec?.Labels, opts.fleet)) return { exists: false, running: false };
      const summary = summarizeTasks(await tasksOf(service.ID), crashLoopAfter);
      const state: ObjectState = { exists: true, running: Boolean(summary.running) };
      const address = summary.running
        ? await addressOf(service, summary.running).catch(() => undefined)
        : undefined;
      if (address) Object.assign(state, address);
      if (!summary.running) {
        state.reason = await explain(summary);
        state.terminal = summary.terminal;
      }
      return state;
    },

    async remove(ref): Promise<void> {
      validateRef(ref);
      await perServer.run(ref, async () => {
        const service = await findService(ref);
        // A namesake that is not ours stays, and is reported once what is ours is gone.
        let refused: PermanentProvisionError | undefined;
        if (service && !isManaged(service.Spec?.Labels, opts.fleet)) {
          refused = new PermanentProvisionError(
            `swarm service ${ref} is not managed by this tenantdb fleet; refusing to remove it`,
          );
        } else if (service) {
          await docker
            .getService(service.ID)
            .remove()
            .catch((err) => {
              if (statusOf(err) !== 404) throw dockerError(err, `removing service ${ref}`);
            });
        }
        // Found by labels, so what a create that died before its service existed left is found too.
        const filters = { label: labelFilter(opts.fleet, ref) };
        for (const secret of await docker.listSecrets({ filters })) {
          await docker
            .getSecret(secret.ID)
            .remove()
            .catch((err) => {
              if (statusOf(err) !== 404) throw dockerError(err, `removing secret of ${ref}`);
            });
        }
        if (opts.volumeRemoval === 'delete') {
          const { Volumes } = await docker.listVolumes({ filters });
          for (const volume of Volumes ?? []) await removeVolume(volume.Name);
        }
        if (refused) throw refused;
      });
    },

    async list(): Promise<ManagedObject[]> {
      const filters = { label: labelFilter(opts.fleet) };
      const [services, secrets, volumes] = await Promise.all([
        docker.listServices({ filters, status: true }),
        docker.listSecrets({ filters }),
        opts.volumeRemoval === 'delete'
          ? docker.listVolumes({ filters }).then((r) => r.Volumes ?? [])
          : Promise.resolve([]),
      ]);
      // One entry per server: its service, or what is left of it (a secret, a volume) once the
      // service is gone, so that reconcile and cleanup finish a removal that stopped half way.
      const byServer = new Map<string, ManagedObject>();
      const add = (labels: Record<string, string> | undefined, running: boolean) => {
        const serverId = labels?.[SWARM_LABELS.serverId];
        const name = labels?.[SWARM_LABELS.serverName];
        if (!serverId || !name || !/^[a-z][a-z0-9-]{0,62}$/.test(name)) return;
        const known = byServer.get(serverId);
        byServer.set(serverId, { ref: name, serverId, name, running: running || (known?.running ?? false) });
      };
      for (const s of services) add(s.Spec?.Labels, (s.ServiceStatus?.RunningTasks ?? 0) > 0);
      for (const s of secrets) add(s.Spec?.Labels, false);
      for (const v of volumes) add(v.Labels ?? undefined, false);
      return [...byServer.values()];
    },
  };
}

function statusOf(err: unknown): number | undefined {
  const code = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

function messageOf(err: unknown): string {
  const json = (err as { json?: { message?: unknown } } | null)?.json;
  if (json && typeof json.message === 'string') return json.message;
  return err instanceof Error ? err.message : String(err);
}

/** Docker's own message; a 400 (invalid spec, bad image reference) is not worth retrying. */
function dockerError(err: unknown, what: string): Error {
  const message = `${what}: ${messageOf(err)}`;
  return statusOf(err) === 400 ? new PermanentProvisionError(message) : new Error(message);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

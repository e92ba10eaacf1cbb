// The `swarm` driver: one replicated Docker Swarm service per server (dockerode), labelled
// `tenantdb.*`, with its admin password in a Docker secret, its data in a volume of its own and a
// restart policy without an attempt limit. What the service looks like is swarm.objects.ts, the
// Docker plumbing swarm.docker.ts and the way a new service gets to running swarm.start.ts.
//
// Like the local driver it adopts what an earlier attempt made (a worker killed mid-create: the
// retry finds the secret and the service by name and carries on) and never touches an object
// that does not carry this fleet's labels.
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
  type DockerEndpoint,
  dockerClient,
  dockerError,
  findSecret,
  findService,
  nodeAddress,
  removeVolume,
  statusOf,
  tasksOf,
  updateService,
} from './swarm.docker';
import {
  buildSecretSpec,
  buildServiceSpec,
  buildTlsSecretSpecs,
  hostPortOf,
  isManaged,
  labelFilter,
  POSTGRES_PORT,
  pinnedNode,
  type SecretRef,
  SWARM_LABELS,
  type SwarmObjectOptions,
  type TlsSecretRole,
  validateRef,
  validateSwarmSpec,
  withNodePin,
} from './swarm.objects';
import { explain, pickHostPort, waitForStart } from './swarm.start';
import { summarizeTasks, type TaskView } from './swarm.tasks';
import { withLoopbackAliases } from './tls';

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

export interface SwarmProvisioner extends Provisioner {
  readonly driver: 'swarm';
  readonly docker: Docker;
}

export function createSwarmProvisioner(opts: SwarmProvisionerOptions): SwarmProvisioner {
  const docker = opts.docker instanceof Docker ? opts.docker : dockerClient(opts.docker);
  const crashLoopAfter = opts.crashLoopAfter ?? 3;
  const perServer = new KeyedMutex();
  /** Host ports picked by creates in flight in this process (not yet visible in any service). */
  const portsInFlight = new Set<number>();
  const pickPort = (avoid: number[] = [], forService?: string) =>
    pickHostPort(docker, opts.portRange, [...portsInFlight, ...avoid], forService);

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

  /** The admin-password secret: created once; secrets are immutable, so a retry reuses it. */
  function ensureSecret(spec: ServerSpec): Promise<SecretRef> {
    return ensureNamedSecret(spec, buildSecretSpec(spec, opts.fleet));
  }

  /** The TLS secrets (key, certificate, pg_hba), created once like the password's; none without TLS. */
  async function ensureTlsSecrets(spec: ServerSpec): Promise<Record<TlsSecretRole, SecretRef> | undefined> {
    const specs = buildTlsSecretSpecs(spec, opts.fleet);
    if (specs.length === 0) return undefined;
    const refs = await Promise.all(specs.map((s) => ensureNamedSecret(spec, s.spec)));
    return Object.fromEntries(specs.map((s, i) => [s.role, refs[i]!])) as Record<TlsSecretRole, SecretRef>;
  }

  async function ensureNamedSecret(
    spec: ServerSpec,
    secretSpec: { Name: string; Labels: Record<string, string>; Data: string },
  ): Promise<SecretRef> {
    const name = secretSpec.Name;
    const check = (secret: Docker.Secret) => {
      const labels = secret.Spec?.Labels;
      if (!isManaged(labels, opts.fleet) || labels?.[SWARM_LABELS.serverId] !== spec.serverId) {
        throw new PermanentProvisionError(
          `secret ${name} exists and is not this server's; refusing to use it`,
        );
      }
      return { id: secret.ID, name };
    };
    const existing = await findSecret(docker, name);
    if (existing) return check(existing);
    try {
      const created = (await docker.createSecret(secretSpec)) as { id: string };
      return { id: created.id, name };
    } catch (err) {
      if (statusOf(err) !== 409) throw dockerError(err, `creating secret ${name}`);
      const raced = await findSecret(docker, name);
      if (!raced) throw dockerError(err, `creating secret ${name}`);
      return check(raced);
    }
  }

  async function createService(spec: ServerSpec): Promise<Docker.Service> {
    const secret = await ensureSecret(spec);
    const tlsSecrets = await ensureTlsSecrets(spec);
    const port = opts.publishMode === 'host' ? await pickPort() : undefined;
    if (port !== undefined) portsInFlight.add(port);
    try {
      await docker.createService(
        buildServiceSpec({
          spec,
          options: opts,
          secret,
          ...(tlsSecrets ? { tlsSecrets } : {}),
          publishedPort: port,
        }),
      );
    } catch (err) {
      // 409: a racing attempt for the same server made it first; adopted below like any retry.
      if (statusOf(err) !== 409) throw dockerError(err, `creating service ${spec.name}`);
    } finally {
      if (port !== undefined) portsInFlight.delete(port);
    }
    const service = await findService(docker, spec.name);
    if (!service) throw new Error(`swarm service ${spec.name} vanished right after it was created`);
    assertOurs(service, spec);
    return service;
  }

  /** Where the control plane reaches the server, given the task that serves it. */
  async function addressOf(service: Docker.Service, task: TaskView): Promise<{ host: string; port: number }> {
    const name = service.Spec?.Name ?? service.ID;
    if (opts.publishMode === 'none') return { host: name, port: POSTGRES_PORT };
    const host = opts.connectHost ?? (await nodeAddress(docker, task.nodeId));
    if (opts.publishMode === 'host') {
      const port = task.publishedPort ?? hostPortOf(service.Spec);
      if (!port) throw new Error(`swarm service ${name} publishes no host port`);
      return { host, port };
    }
    const ingress = (await findService(docker, service.ID))?.Endpoint?.Ports?.find(
      (p) => p.TargetPort === POSTGRES_PORT && p.PublishedPort,
    );
    if (!ingress?.PublishedPort) throw new Error(`swarm service ${name} has no ingress port yet`);
    return { host, port: ingress.PublishedPort };
  }

  return {
    driver: 'swarm',
    docker,

    // The service name (on its overlay network), and the connect host tenants use for published
    // ports. Without TENANTDB_SWARM_CONNECT_HOST the node's address is only known once a task
    // runs, after the certificate is made: set it to let clients verify the host (docs/security.md).
    tlsHosts(name) {
      return [name, ...(opts.connectHost ? withLoopbackAliases(opts.connectHost) : [])];
    },

    async create(spec): Promise<ProvisionedServer> {
      validateSwarmSpec(spec);
      return perServer.run(spec.name, async () => {
        let service = await findService(docker, spec.name);
        if (service) assertOurs(service, spec);
        else service = await createService(spec);

        const task = await waitForStart(docker, service, {
          publishMode: opts.publishMode,
          startTimeoutMs: opts.startTimeoutMs,
          crashLoopAfter,
          pickPort,
        });
        if (opts.pinToNode && task.nodeId && !pinnedNode(service.Spec)) {
          // Only the constraint changes and the running task satisfies it: swarm leaves it running.
          await updateService(docker, service, (s) => withNodePin(s, task.nodeId!));
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
      const service = await findService(docker, ref);
      if (!service || !isManaged(service.Spec?.Labels, opts.fleet)) return { exists: false, running: false };
      const summary = summarizeTasks(await tasksOf(docker, service.ID), crashLoopAfter);
      const state: ObjectState = { exists: true, running: Boolean(summary.running) };
      const address = summary.running
        ? await addressOf(service, summary.running).catch(() => undefined)
        : undefined;
      if (address) Object.assign(state, address);
      if (!summary.running) {
        state.reason = await explain(docker, summary);
        state.terminal = summary.terminal;
      }
      return state;
    },

    async remove(ref): Promise<void> {
      validateRef(ref);
      await perServer.run(ref, async () => {
        const service = await findService(docker, ref);
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
          for (const volume of Volumes ?? []) await removeVolume(docker, volume.Name);
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

// The `kubernetes` driver (@kubernetes/client-node): in one namespace, per server a Secret with
// the admin credentials and either a StatefulSet with its headless Service (the PVC comes from
// the volumeClaimTemplate) or a CloudNativePG Cluster. What the objects look like is
// kubernetes.objects.ts (and the files it names); this file talks to the API server.
//
// As the other drivers: a create that finds its objects already there (409) adopts them when
// they carry this server's labels and refuses otherwise; a delete that finds nothing (404) is
// done; objects without the tenantdb labels are never deleted. The only verbs used are create,
// get, list and delete (k8s/base/worker-rbac.yaml grants exactly those); each kind's calls are
// kubernetes.api.ts.
import { AppsV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { apiError, codeOf, type K8sObject, type Kind, kindsIn, statusOf } from './kubernetes.api';
import { buildCnpgCluster } from './kubernetes.cnpg';
import {
  buildAdminSecret,
  buildTlsSecret,
  hostFor,
  isManaged,
  K8S_LABELS,
  type KubernetesObjectOptions,
  managedSelector,
  POSTGRES_PORT,
  secretNameFor,
  tlsSecretNameFor,
  validateKubernetesSpec,
  validateRef,
} from './kubernetes.objects';
import { summarizePods } from './kubernetes.pods';
import { buildHeadlessService, buildStatefulSet, claimNameFor } from './kubernetes.statefulset';
import { KeyedMutex } from './mutex';
import {
  type ManagedObject,
  type ObjectState,
  PermanentProvisionError,
  type ProvisionedServer,
  type Provisioner,
  type ServerSpec,
} from './provisioner';

export interface KubernetesProvisionerOptions extends KubernetesObjectOptions {
  kubeConfig: KubeConfig;
  /** Container restarts in CrashLoopBackOff that make a starting server terminal. */
  crashLoopAfter?: number;
}

export interface KubernetesProvisioner extends Provisioner {
  readonly driver: 'kubernetes';
}

export function createKubernetesProvisioner(opts: KubernetesProvisionerOptions): KubernetesProvisioner {
  const core = opts.kubeConfig.makeApiClient(CoreV1Api);
  const apps = opts.kubeConfig.makeApiClient(AppsV1Api);
  const custom = opts.kubeConfig.makeApiClient(CustomObjectsApi);
  const namespace = opts.namespace;
  const crashLoopAfter = opts.crashLoopAfter ?? 3;
  const perServer = new KeyedMutex();
  const kinds = kindsIn(namespace, { core, apps, custom });

  const main: Kind = opts.mode === 'cnpg' ? kinds.cluster : kinds.statefulSet;
  const isReady = (object: K8sObject) =>
    ((opts.mode === 'cnpg' ? statusOf(object).readyInstances : statusOf(object).readyReplicas) ?? 0) > 0;

  async function read(kind: Kind, name: string): Promise<K8sObject | undefined> {
    try {
      return await kind.read(name);
    } catch (err) {
      if (codeOf(err) === 404) return undefined;
      throw apiError(err, `reading ${kind.name} ${namespace}/${name}`);
    }
  }

  /** Creates the object, or adopts the one a previous attempt made (409 with this server's labels). */
  async function ensure(kind: Kind, body: { metadata?: { name?: string } }, spec: ServerSpec): Promise<void> {
    const name = body.metadata?.name ?? spec.name;
    try {
      await kind.create(body);
      return;
    } catch (err) {
      if (codeOf(err) !== 409) throw apiError(err, `creating ${kind.name} ${namespace}/${name}`);
    }
    const existing = await read(kind, name);
    if (!existing) throw new Error(`${kind.name} ${namespace}/${name} reported as existing, then not found`);
    const labels = existing.metadata?.labels;
    if (!isManaged(labels) || labels?.[K8S_LABELS.serverId] !== spec.serverId) {
      throw new PermanentProvisionError(
        `${kind.name} ${namespace}/${name} exists and is not managed by tenantdb for this server; refusing to use it`,
      );
    }
  }

  /** Deletes the object if it is ours (the uid precondition: exactly the object that was read). */
  async function removeIfOurs(kind: Kind, name: string, required: boolean): Promise<void> {
    const existing = await read(kind, name);
    if (!existing) return;
    if (!isManaged(existing.metadata?.labels)) {
      if (!required) return; // a namesake someone else made: not ours to delete
      throw new PermanentProvisionError(
        `${kind.name} ${namespace}/${name} is not managed by tenantdb; refusing to delete it`,
      );
    }
    const uid = existing.metadata?.uid;
    try {
      await kind.remove(name, uid ? { preconditions: { uid } } : {});
    } catch (err) {
      if (codeOf(err) !== 404) throw apiError(err, `deleting ${kind.name} ${namespace}/${name}`);
    }
  }

  return {
    driver: 'kubernetes',

    // The Service's DNS names, short and long (clients in the namespace, in the cluster). None in
    // cnpg mode: CloudNativePG serves TLS with certificates of its own, not the fleet CA's.
    tlsHosts(name) {
      if (opts.mode === 'cnpg') return [];
      const host = hostFor(name, opts);
      const base = host.replace(/\.svc$/, '');
      return [host, `${host}.cluster.local`, base, base.split('.')[0]!];
    },

    async create(spec): Promise<ProvisionedServer> {
      validateKubernetesSpec(spec);
      return perServer.run(spec.name, async () => {
        // Someone else's namesake: refuse before making anything (a secret made now would be left over).
        const namesake = await read(main, spec.name);
        if (namesake && !isManaged(namesake.metadata?.labels)) {
          throw new PermanentProvisionError(
            `${main.name} ${namespace}/${spec.name} exists and is not managed by tenantdb; refusing to use it`,
          );
        }
        // The secret first: what uses it never starts without it.
        await ensure(kinds.secret, buildAdminSecret(spec, opts).toJSON(), spec);
        if (opts.mode === 'cnpg') {
          await ensure(kinds.cluster, buildCnpgCluster(spec, opts).toJSON(), spec);
        } else {
          const tlsSecret = buildTlsSecret(spec, opts);
          if (tlsSecret) await ensure(kinds.secret, tlsSecret.toJSON(), spec);
          await ensure(kinds.service, buildHeadlessService(spec, opts).toJSON(), spec);
          await ensure(kinds.statefulSet, buildStatefulSet(spec, opts).toJSON(), spec);
        }
        return { ref: spec.name, host: hostFor(spec.name, opts), port: POSTGRES_PORT, image: opts.image };
      });
    },

    async inspect(ref): Promise<ObjectState> {
      validateRef(ref);
      const object = await read(main, ref);
      const labels = object?.metadata?.labels;
      if (!object || !isManaged(labels)) return { exists: false, running: false };
      const status = statusOf(object);
      const ready = isReady(object);
      const state: ObjectState = {
        exists: true,
        running: ready,
        host: hostFor(ref, opts),
        port: POSTGRES_PORT,
      };
      if (!ready) {
        const pods = await core
          .listNamespacedPod({ namespace, labelSelector: managedSelector(labels?.[K8S_LABELS.serverId]) })
          .then((r) => r.items)
          .catch((err) => {
            throw apiError(err, `listing pods of ${namespace}/${ref}`);
          });
        const summary = summarizePods(pods, crashLoopAfter);
        const phase = status.phase
          ? `${status.phase}${status.phaseReason ? ` (${status.phaseReason})` : ''}; `
          : '';
        state.reason = `${phase}${summary.reason ?? 'not ready'}`;
        state.terminal = summary.terminal;
      }
      return state;
    },

    async remove(ref): Promise<void> {
      validateRef(ref);
      await perServer.run(ref, async () => {
        // A namesake that is not ours stays, and is reported once what is ours is gone.
        const refused = await removeIfOurs(main, ref, true).then(
          () => undefined,
          (err: unknown) => {
            if (err instanceof PermanentProvisionError) return err;
            throw err;
          },
        );
        if (opts.mode === 'statefulset') {
          await removeIfOurs(kinds.service, ref, false);
          // Also deleted by the StatefulSet's retention policy where the cluster supports it.
          if (opts.volumeRemoval === 'delete') await removeIfOurs(kinds.claim, claimNameFor(ref), false);
        }
        await removeIfOurs(kinds.secret, secretNameFor(ref), false);
        if (opts.mode === 'statefulset') await removeIfOurs(kinds.secret, tlsSecretNameFor(ref), false);
        if (refused) throw refused;
      });
    },

    async list(): Promise<ManagedObject[]> {
      const selector = managedSelector();
      const others: Kind[] =
        opts.mode === 'cnpg'
          ? [kinds.secret]
          : [kinds.secret, kinds.service, ...(opts.volumeRemoval === 'delete' ? [kinds.claim] : [])];
      const [mains, ...rest] = await Promise.all(
        [main, ...others].map((kind) =>
          kind.list(selector).catch((err) => {
            throw apiError(err, `listing ${kind.name}s in ${namespace}`);
          }),
        ),
      );
      // One entry per server: its main object, or what is left once that is gone (a secret, a
      // claim), so that reconcile and cleanup finish a removal that stopped half way.
      const byServer = new Map<string, ManagedObject>();
      const add = (object: K8sObject, running: boolean) => {
        const labels = object.metadata?.labels;
        const serverId = labels?.[K8S_LABELS.serverId];
        const name = labels?.[K8S_LABELS.instance];
        if (!serverId || !name || !isManaged(labels) || !/^[a-z][a-z0-9-]{0,49}$/.test(name)) return;
        const known = byServer.get(serverId);
        byServer.set(serverId, { ref: name, serverId, name, running: running || (known?.running ?? false) });
      };
      for (const o of mains ?? []) add(o, isReady(o));
      for (const list of rest) for (const o of list) add(o, false);
      return [...byServer.values()];
    },
  };
}

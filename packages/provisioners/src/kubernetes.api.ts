// What the kubernetes driver calls on the API server: each kind's typed client calls (kindsIn),
// next to the access they need (KUBERNETES_API_ACCESS), and how the API server's errors read.
import {
  ApiException,
  type AppsV1Api,
  type CoreV1Api,
  type CustomObjectsApi,
  KubeConfig,
  type V1DeleteOptions,
} from '@kubernetes/client-node';
import { PermanentProvisionError } from './provisioner';

/**
 * Every API call the driver makes, by API group and resource: exactly what its Role grants
 * (k8s/base/worker-rbac.yaml; a test keeps the two equal, and the test API server refuses anything else).
 */
export const KUBERNETES_API_ACCESS = [
  { apiGroup: '', resource: 'secrets', verbs: ['create', 'delete', 'get', 'list'] },
  { apiGroup: '', resource: 'services', verbs: ['create', 'delete', 'get', 'list'] },
  { apiGroup: '', resource: 'persistentvolumeclaims', verbs: ['delete', 'get', 'list'] },
  { apiGroup: '', resource: 'pods', verbs: ['list'] },
  { apiGroup: 'apps', resource: 'statefulsets', verbs: ['create', 'delete', 'get', 'list'] },
  { apiGroup: 'postgresql.cnpg.io', resource: 'clusters', verbs: ['create', 'delete', 'get', 'list'] },
] as const;

/** `in-cluster`: the pod's service account; otherwise the path of a kubeconfig file. */
export function loadKubeConfig(source: { kubeconfig: string; context?: string }): KubeConfig {
  const kc = new KubeConfig();
  if (source.kubeconfig === 'in-cluster') kc.loadFromCluster();
  else kc.loadFromFile(source.kubeconfig);
  if (source.context) kc.setCurrentContext(source.context);
  return kc;
}

export interface K8sObject {
  metadata?: { name?: string; uid?: string; labels?: Record<string, string> };
  /** Differs per kind; read through statusOf. */
  status?: unknown;
}

export function statusOf(object: K8sObject): {
  readyReplicas?: number;
  readyInstances?: number;
  phase?: string;
  phaseReason?: string;
} {
  return (object.status ?? {}) as ReturnType<typeof statusOf>;
}

/** One kind of object the driver handles, through the client's typed calls. */
export interface Kind {
  name: string;
  create(body: object): Promise<unknown>;
  read(name: string): Promise<K8sObject>;
  remove(name: string, body: V1DeleteOptions): Promise<unknown>;
  list(labelSelector: string): Promise<K8sObject[]>;
}

const CNPG = { group: 'postgresql.cnpg.io', version: 'v1', plural: 'clusters' } as const;

/** The driver's kinds in one namespace. */
export function kindsIn(
  namespace: string,
  { core, apps, custom }: { core: CoreV1Api; apps: AppsV1Api; custom: CustomObjectsApi },
) {
  return {
    secret: {
      name: 'Secret',
      create: (body) => core.createNamespacedSecret({ namespace, body }),
      read: (name) => core.readNamespacedSecret({ namespace, name }),
      remove: (name, body) => core.deleteNamespacedSecret({ namespace, name, body }),
      list: async (labelSelector) => (await core.listNamespacedSecret({ namespace, labelSelector })).items,
    },
    service: {
      name: 'Service',
      create: (body) => core.createNamespacedService({ namespace, body }),
      read: (name) => core.readNamespacedService({ namespace, name }),
      remove: (name, body) => core.deleteNamespacedService({ namespace, name, body }),
      list: async (labelSelector) => (await core.listNamespacedService({ namespace, labelSelector })).items,
    },
    claim: {
      name: 'PersistentVolumeClaim',
      create: () => Promise.reject(new Error('claims come from the volumeClaimTemplate')),
      read: (name) => core.readNamespacedPersistentVolumeClaim({ namespace, name }),
      remove: (name, body) => core.deleteNamespacedPersistentVolumeClaim({ namespace, name, body }),
      list: async (labelSelector) =>
        (await core.listNamespacedPersistentVolumeClaim({ namespace, labelSelector })).items,
    },
    statefulSet: {
      name: 'StatefulSet',
      create: (body) => apps.createNamespacedStatefulSet({ namespace, body }),
      read: (name) => apps.readNamespacedStatefulSet({ namespace, name }),
      remove: (name, body) =>
        apps.deleteNamespacedStatefulSet({ namespace, name, body, propagationPolicy: 'Background' }),
      list: async (labelSelector) =>
        (await apps.listNamespacedStatefulSet({ namespace, labelSelector })).items,
    },
    cluster: {
      name: 'Cluster',
      create: (body) => custom.createNamespacedCustomObject({ ...CNPG, namespace, body }),
      read: (name) => custom.getNamespacedCustomObject({ ...CNPG, namespace, name }),
      remove: (name, body) =>
        custom.deleteNamespacedCustomObject({
          ...CNPG,
          namespace,
          name,
          body,
          propagationPolicy: 'Background',
        }),
      list: async (labelSelector) =>
        (
          (await custom.listNamespacedCustomObject({ ...CNPG, namespace, labelSelector })) as {
            items?: K8sObject[];
          }
        ).items ?? [],
    },
  } satisfies Record<string, Kind>;
}
export function codeOf(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

/** The API server's own message; an invalid object (400, 422) is not worth retrying. */
export function apiError(err: unknown, what: string): Error {
  if (!(err instanceof ApiException))
    return err instanceof Error ? err : new Error(`${what}: ${String(err)}`);
  let message = '';
  try {
    const body = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
    message = typeof body?.message === 'string' ? body.message : '';
  } catch {
    // not JSON
  }
  const text = `${what}: HTTP ${err.code}${message ? `: ${message}` : ''}`;
  return err.code === 400 || err.code === 422 ? new PermanentProvisionError(text) : new Error(text);
}

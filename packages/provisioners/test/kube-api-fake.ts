// An in-test Kubernetes API server implementing exactly the paths the kubernetes driver calls:
// create / get / delete / list-by-label-selector of Secrets, Services, StatefulSets and
// CloudNativePG Clusters in a namespace, get / delete / list of PersistentVolumeClaims and list of
// Pods. It answers like the real API server where the driver depends on it: 201 on create, 409
// AlreadyExists on a second create, 404 NotFound on get/delete of a missing object, 409 on a
// delete whose uid precondition does not match, 422 Invalid for an object that fails its schema
// (checked with kubernetes-models), 401 without the bearer token. It runs no controllers:
// `runStatefulSetController` / `setStatus` / `putPod` play their part when a test asks.
// Any other path is answered 404 and recorded in `unexpected`, so a test notices a call it does
// not expect.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { Cluster } from '@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1/Cluster';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { KUBERNETES_API_ACCESS } from '../src/kubernetes.api';

export type Resource =
  | 'secrets'
  | 'services'
  | 'persistentvolumeclaims'
  | 'pods'
  | 'statefulsets'
  | 'clusters';

// biome-ignore lint/suspicious/noExplicitAny: objects of every kind pass through as JSON
type Obj = Record<string, any>;

const KINDS: Record<Resource, { kind: string; apiVersion: string; validate(o: Obj): void }> = {
  secrets: { kind: 'Secret', apiVersion: 'v1', validate: validateSecret },
  services: { kind: 'Service', apiVersion: 'v1', validate: (o) => new Service(o as never).validate() },
  persistentvolumeclaims: {
    kind: 'PersistentVolumeClaim',
    apiVersion: 'v1',
    validate: (o) => new PersistentVolumeClaim(o as never).validate(),
  },
  pods: { kind: 'Pod', apiVersion: 'v1', validate: (o) => new Pod(o as never).validate() },
  statefulsets: {
    kind: 'StatefulSet',
    apiVersion: 'apps/v1',
    validate: (o) => new StatefulSet(o as never).validate(),
  },
  clusters: {
    kind: 'Cluster',
    apiVersion: 'postgresql.cnpg.io/v1',
    validate: (o) => new Cluster(o as never).validate(),
  },
};

/**
 * The schema, and what the API server checks beyond it for the Secret types the driver sends: a
 * kubernetes.io/tls Secret must hold tls.crt and tls.key (422 otherwise), basic-auth a username
 * or password.
 */
function validateSecret(o: Obj): void {
  new Secret(o as never).validate();
  const data = (o.data ?? {}) as Record<string, string>;
  if (o.type === 'kubernetes.io/tls' && (!data['tls.crt'] || !data['tls.key']))
    throw new Error('data[tls.crt] and data[tls.key]: Required value');
  if (o.type === 'kubernetes.io/basic-auth' && !data.username && !data.password)
    throw new Error('data[username] or data[password]: Required value');
}

const ROUTES: { re: RegExp; resources: Resource[] }[] = [
  {
    re: /^\/api\/v1\/namespaces\/([^/]+)\/(secrets|services|persistentvolumeclaims|pods)(?:\/([^/]+))?$/,
    resources: ['secrets', 'services', 'persistentvolumeclaims', 'pods'],
  },
  {
    re: /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/(statefulsets)(?:\/([^/]+))?$/,
    resources: ['statefulsets'],
  },
  {
    re: /^\/apis\/postgresql\.cnpg\.io\/v1\/namespaces\/([^/]+)\/(clusters)(?:\/([^/]+))?$/,
    resources: ['clusters'],
  },
];
/** What the driver says it does per resource (and k8s/base/worker-rbac.yaml grants): nothing else passes. */
const ALLOWED = new Map<string, Set<string>>(
  KUBERNETES_API_ACCESS.map((a) => [a.resource, new Set<string>(a.verbs)]),
);

export interface FakeRequest {
  method: string;
  path: string;
  verb: string;
  resource?: Resource;
  status: number;
}

export interface KubeApiFake {
  url: string;
  token: string;
  /** A KubeConfig pointing at the fake, with the bearer token it expects. */
  kubeConfig(): KubeConfig;
  /** The same as a kubeconfig file (what an operator configures), removed by close(). */
  kubeconfigFile(): Promise<string>;
  objects(resource: Resource, namespace?: string): Obj[];
  get(resource: Resource, namespace: string, name: string): Obj | undefined;
  /** Puts an object as-is (a namesake someone else made, a pod a controller made). */
  put(resource: Resource, namespace: string, object: Obj): Obj;
  setStatus(resource: Resource, namespace: string, name: string, status: Obj): void;
  /** What the StatefulSet controller would do: a pod and its claim from the templates. */
  runStatefulSetController(namespace: string, name: string, podStatus?: Obj): void;
  requests: FakeRequest[];
  /** Calls to paths or verbs the fake does not implement. */
  unexpected: FakeRequest[];
  close(): Promise<void>;
}

export async function startKubeApiFake(): Promise<KubeApiFake> {
  const token = randomUUID();
  const store = new Map<string, Obj>();
  const requests: FakeRequest[] = [];
  const unexpected: FakeRequest[] = [];
  let version = 1;
  const key = (r: Resource, ns: string, name: string) => `${r}/${ns}/${name}`;

  function stamp(resource: Resource, namespace: string, object: Obj): Obj {
    const { kind, apiVersion } = KINDS[resource];
    return {
      ...object,
      kind,
      apiVersion,
      metadata: {
        ...object.metadata,
        namespace,
        uid: object.metadata?.uid ?? randomUUID(),
        resourceVersion: String(version++),
        creationTimestamp: object.metadata?.creationTimestamp ?? new Date().toISOString(),
      },
    };
  }

  function put(resource: Resource, namespace: string, object: Obj): Obj {
    const stored = stamp(resource, namespace, object);
    store.set(key(resource, namespace, stored.metadata.name), stored);
    return stored;
  }

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const record: FakeRequest = { method: req.method ?? 'GET', path: url.pathname, verb: '?', status: 0 };
    requests.push(record);
    const answer = (status: number, body: unknown) => {
      record.status = status;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${token}`)
      return answer(401, status(401, 'Unauthorized', 'no token'));

    const route = ROUTES.map((r) => ({ r, m: r.re.exec(url.pathname) })).find((x) => x.m);
    if (!route?.m) {
      unexpected.push(record);
      return answer(404, status(404, 'NotFound', 'the server could not find the requested resource'));
    }
    const [, namespace, resourceName, name] = route.m as unknown as [
      string,
      string,
      Resource,
      string | undefined,
    ];
    const resource = resourceName;
    record.resource = resource;
    const verb =
      req.method === 'POST' && !name
        ? 'create'
        : req.method === 'GET' && name
          ? 'get'
          : req.method === 'GET'
            ? 'list'
            : req.method === 'DELETE' && name
              ? 'delete'
              : `${req.method?.toLowerCase()}`;
    record.verb = verb;
    if (!ALLOWED.get(resource)?.has(verb)) {
      unexpected.push(record);
      return answer(
        405,
        status(405, 'MethodNotAllowed', `${verb} ${resource} is not something the driver does`),
      );
    }
    const { kind } = KINDS[resource];
    const body = await readJson(req);

    if (verb === 'create') {
      const objName = body?.metadata?.name as string | undefined;
      if (!body || !objName)
        return answer(422, status(422, 'Invalid', `${kind} without metadata.name`, kind));
      if (body.metadata.namespace && body.metadata.namespace !== namespace)
        return answer(
          400,
          status(400, 'BadRequest', 'the namespace of the object does not match the path', kind),
        );
      if (body.kind !== kind || body.apiVersion !== KINDS[resource].apiVersion)
        return answer(400, status(400, 'BadRequest', `expected ${kind}, got ${body.kind}`, kind));
      try {
        KINDS[resource].validate(body);
      } catch (err) {
        return answer(
          422,
          status(422, 'Invalid', `${kind} "${objName}" is invalid: ${(err as Error).message}`, kind, objName),
        );
      }
      if (store.has(key(resource, namespace, objName)))
        return answer(
          409,
          status(409, 'AlreadyExists', `${resource} "${objName}" already exists`, kind, objName),
        );
      return answer(201, put(resource, namespace, body));
    }
    if (verb === 'get') {
      const found = store.get(key(resource, namespace, name!));
      return found
        ? answer(200, found)
        : answer(404, status(404, 'NotFound', `${resource} "${name}" not found`, kind, name));
    }
    if (verb === 'delete') {
      const found = store.get(key(resource, namespace, name!));
      if (!found) return answer(404, status(404, 'NotFound', `${resource} "${name}" not found`, kind, name));
      const uid = body?.preconditions?.uid;
      if (uid && uid !== found.metadata.uid)
        return answer(
          409,
          status(409, 'Conflict', `Precondition failed: UID in precondition: ${uid}`, kind, name),
        );
      store.delete(key(resource, namespace, name!));
      return answer(200, {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Success',
        details: { name, kind },
      });
    }
    // list
    const selector = parseSelector(url.searchParams.get('labelSelector') ?? '');
    const items = [...store.entries()]
      .filter(([k]) => k.startsWith(`${resource}/${namespace}/`))
      .map(([, o]) => o)
      .filter((o) => selector(o.metadata?.labels ?? {}));
    return answer(200, {
      kind: `${kind}List`,
      apiVersion: KINDS[resource].apiVersion,
      metadata: { resourceVersion: String(version) },
      items,
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const fileDirs: string[] = [];

  function kubeConfig() {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      // The fake speaks plain HTTP, which the client only allows with TLS verification off.
      clusters: [{ name: 'fake', server: url, skipTLSVerify: true }],
      users: [{ name: 'tenantdb-worker', token }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'tenantdb-worker', namespace: 'default' }],
      currentContext: 'fake',
    });
    return kc;
  }

  return {
    url,
    token,
    kubeConfig,
    async kubeconfigFile() {
      const dir = await mkdtemp(join(tmpdir(), 'tenantdb-kube-'));
      fileDirs.push(dir);
      const file = join(dir, 'kubeconfig');
      // JSON is YAML: the client reads its own export back.
      await writeFile(file, kubeConfig().exportConfig(), { mode: 0o600 });
      return file;
    },
    objects: (resource, namespace) =>
      [...store.entries()].filter(([k]) => k.startsWith(`${resource}/${namespace ?? ''}`)).map(([, o]) => o),
    get: (resource, namespace, name) => store.get(key(resource, namespace, name)),
    put,
    setStatus(resource, namespace, name, s) {
      const found = store.get(key(resource, namespace, name));
      if (!found) throw new Error(`no ${resource} ${namespace}/${name}`);
      found.status = { ...found.status, ...s };
    },
    runStatefulSetController(namespace, name, podStatus) {
      const sts = store.get(key('statefulsets', namespace, name));
      if (!sts) throw new Error(`no statefulset ${namespace}/${name}`);
      for (const template of sts.spec.volumeClaimTemplates ?? []) {
        put('persistentvolumeclaims', namespace, {
          metadata: { name: `${template.metadata.name}-${name}-0`, labels: template.metadata.labels },
          spec: template.spec,
        });
      }
      put('pods', namespace, {
        metadata: { name: `${name}-0`, labels: sts.spec.template.metadata.labels },
        spec: sts.spec.template.spec,
        status: podStatus ?? { phase: 'Pending' },
      });
    },
    requests,
    unexpected,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      for (const dir of fileDirs.splice(0)) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The status of a pod whose postgres container cannot get its image (the registry has no such manifest). */
export function imagePullBackOff(image: string): Obj {
  return {
    phase: 'Pending',
    containerStatuses: [
      {
        name: 'postgres',
        ready: false,
        restartCount: 0,
        state: {
          waiting: {
            reason: 'ImagePullBackOff',
            message: `Back-off pulling image "${image}": manifest unknown`,
          },
        },
      },
    ],
  };
}

function status(code: number, reason: string, message: string, kind?: string, name?: string) {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    details: { ...(name ? { name } : {}), ...(kind ? { kind: kind.toLowerCase() } : {}) },
    code,
  };
}

async function readJson(req: IncomingMessage): Promise<Obj | undefined> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a` (exists), `!a`. */
function parseSelector(raw: string): (labels: Record<string, string>) => boolean {
  const terms = raw
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)
    .map((t) => {
      let m = /^([^!=]+)!=(.*)$/.exec(t);
      if (m) return (l: Record<string, string>) => l[m![1]!] !== m![2];
      m = /^([^!=]+)==?(.*)$/.exec(t);
      if (m) return (l: Record<string, string>) => l[m![1]!] === m![2];
      if (t.startsWith('!')) return (l: Record<string, string>) => !(t.slice(1) in l);
      return (l: Record<string, string>) => t in l;
    });
  return (labels) => terms.every((term) => term(labels));
}

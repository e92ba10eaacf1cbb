// k8s/base and both overlays render with kustomize (`kubectl kustomize`, as docs/deploy-kubernetes.md
// has you run it), every object validates against the Kubernetes schema (validate.ts), and the
// deployment keeps its promises: probes, limits, non-root with a read-only root filesystem, a
// Service, PDB and (APIs) HPA per process, every variable a process requires supplied, secrets
// only by reference, and NetworkPolicies that let only the right pods reach tenant servers and
// the catalog.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { labelsFor } from '../packages/provisioners/src/kubernetes.objects';
import { PROCESSES, type ProcessName, SECRET_SAMPLES } from './processes';
import { type KubeObject, validateObject } from './validate';

const here = fileURLToPath(new URL('.', import.meta.url));
const run = promisify(execFile);

const TARGETS = ['base', 'overlays/dev', 'overlays/prod'] as const;

async function render(target: string): Promise<KubeObject[] | { skip: string }> {
  try {
    const { stdout } = await run('kubectl', ['kustomize', resolve(here, target)], { maxBuffer: 16 << 20 });
    return parseAllDocuments(stdout).map((d) => d.toJS() as KubeObject);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { skip: 'kubectl is not installed' };
    throw err;
  }
}

const rendered = new Map<string, KubeObject[]>();
let skip: string | undefined;
for (const target of TARGETS) {
  const result = await render(target);
  if ('skip' in result) skip = result.skip;
  else rendered.set(target, result);
}
if (skip) console.warn(`SKIPPED k8s/ tests: ${skip} (needs kubectl with kustomize)`);

const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

describe('the schema check', () => {
  it('refuses a field the API does not know, a wrong type and a missing required field', async () => {
    const deployment = (container: Record<string, unknown>, replicas: unknown = 1): KubeObject => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'x' },
      spec: {
        replicas,
        selector: { matchLabels: { a: 'b' } },
        template: { metadata: { labels: { a: 'b' } }, spec: { containers: [container] } },
      },
    });
    await validateObject(deployment({ name: 'a', image: 'x' }));
    await expect(validateObject(deployment({ name: 'a', imagee: 'x' }))).rejects.toThrow(
      /containers\[0\]\.imagee: unknown field/,
    );
    await expect(validateObject(deployment({ name: 'a', image: 'x' }, 'two'))).rejects.toThrow(
      /replicas must be integer/,
    );
    await expect(validateObject(deployment({ image: 'x' }))).rejects.toThrow(/name/);
    await expect(
      validateObject({ apiVersion: 'apps/v1', kind: 'Deployement', metadata: { name: 'x' } }),
    ).rejects.toThrow(/no schema/);
  });
});

describe.skipIf(skip !== undefined).each(TARGETS)('k8s/%s', (target) => {
  const objects = rendered.get(target) ?? [];
  const ofKind = (kind: string) => objects.filter((o) => o.kind === kind);
  const named = (kind: string, name: string) => ofKind(kind).find((o) => o.metadata.name === name);

  it('renders objects that all validate against the Kubernetes schema', async () => {
    expect(objects.length).toBeGreaterThan(20);
    const problems: string[] = [];
    for (const object of objects) await validateObject(object).catch((e: Error) => problems.push(e.message));
    expect(problems).toEqual([]);
  });

  it('runs every process non-root, read-only, with probes and resource limits', () => {
    const workloads = [...ofKind('Deployment'), ...ofKind('StatefulSet')];
    for (const name of Object.keys(PROCESSES)) expect(named('Deployment', name), name).toBeDefined();
    for (const w of workloads) {
      const pod = w.spec.template.spec;
      expect(pod.securityContext?.runAsNonRoot, w.metadata.name).toBe(true);
      expect(pod.securityContext?.seccompProfile?.type, w.metadata.name).toBe('RuntimeDefault');
      for (const c of pod.containers) {
        const where = `${w.metadata.name}/${c.name}`;
        expect(c.livenessProbe, where).toBeDefined();
        expect(c.readinessProbe, where).toBeDefined();
        expect(Object.keys(c.resources?.limits ?? {}).sort(), where).toEqual(['cpu', 'memory']);
        expect(Object.keys(c.resources?.requests ?? {}).sort(), where).toEqual(['cpu', 'memory']);
        expect(c.securityContext, where).toMatchObject({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
      }
    }
  });

  it('probes /healthz and /readyz on the port each process listens on', () => {
    for (const [name, { port }] of Object.entries(PROCESSES)) {
      const [c] = named('Deployment', name)!.spec.template.spec.containers;
      const portName = c.ports.find((p: { containerPort: number }) => p.containerPort === port)?.name;
      expect(portName, name).toBeDefined();
      expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: portName });
      expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: portName });
      expect(c.args).toEqual([name]);
    }
  });

  it('gives every process the variables its config schema requires, secrets by reference only', () => {
    const config = named('ConfigMap', 'tenantdb-config')!.data as Record<string, string>;
    const known = new Set(Object.values(PROCESSES).flatMap(({ schema }) => Object.keys(schema.shape)));
    for (const key of Object.keys(config)) expect(known.has(key), `${key} is read by no process`).toBe(true);
    for (const [name, { schema }] of Object.entries(PROCESSES)) {
      const [c] = named('Deployment', name)!.spec.template.spec.containers;
      expect(c.envFrom).toEqual([{ configMapRef: { name: 'tenantdb-config' } }]);
      const env: Record<string, string> = { ...config };
      for (const e of c.env as {
        name: string;
        value?: string;
        valueFrom?: { secretKeyRef?: { key: string } };
      }[]) {
        // No literal values: settings belong in the ConfigMap, secrets in the Secret.
        expect(e.value, `${name} ${e.name}`).toBeUndefined();
        expect(e.valueFrom?.secretKeyRef?.key).toBe(e.name);
        expect(Object.keys(schema.shape), `${name} does not read ${e.name}`).toContain(e.name);
        env[e.name] = SECRET_SAMPLES[e.name]!;
      }
      const parsed = schema.safeParse(env);
      expect(parsed.error?.issues ?? [], name).toEqual([]);
    }
    // The tree holds no Secret objects, only the template.
    expect(ofKind('Secret')).toEqual([]);
  });

  it('ships an allow-list for callbacks that instance-service accepts', () => {
    const config = named('ConfigMap', 'tenantdb-config')!.data as Record<string, string>;
    const hosts = config.TENANTDB_CALLBACK_ALLOWED_HOSTS;
    expect(hosts).toBeTruthy();
    const parsed = PROCESSES['instance-service'].schema.safeParse({ ...config, ...SECRET_SAMPLES });
    expect(parsed.error?.issues ?? []).toEqual([]);
    expect(
      (parsed.data as { TENANTDB_CALLBACK_ALLOWED_HOSTS: string[] }).TENANTDB_CALLBACK_ALLOWED_HOSTS.length,
    ).toBeGreaterThan(0);
  });

  it('has a Service and a PodDisruptionBudget for every process, and an HPA for the two APIs', () => {
    for (const [name, { api }] of Object.entries(PROCESSES) as [ProcessName, { api: boolean }][]) {
      const labels = named('Deployment', name)!.spec.template.metadata.labels;
      expect(
        ofKind('Service').some((s) => matches(s.spec.selector, labels)),
        `${name}: no Service`,
      ).toBe(true);
      expect(
        ofKind('PodDisruptionBudget').some((p) => matches(p.spec.selector.matchLabels, labels)),
        `${name}: no PDB`,
      ).toBe(true);
      const hpa = ofKind('HorizontalPodAutoscaler').find((h) => h.spec.scaleTargetRef.name === name);
      expect(Boolean(hpa), `${name}: HPA`).toBe(api);
      if (hpa) expect(hpa.spec.minReplicas).toBeLessThanOrEqual(hpa.spec.maxReplicas);
    }
  });

  it('lets only the worker, database-service and tenant apps reach tenant servers', () => {
    const policies = ofKind('NetworkPolicy').filter((p) => p.metadata.namespace === 'tenantdb-servers');
    // Everything not allowed below is denied.
    expect(policies.some((p) => Object.keys(p.spec.podSelector).length === 0 && !p.spec.ingress)).toBe(true);
    const serverPod = labelsFor({ serverId: 'id', name: 'tdb-pool-x', serverType: 'shared' });
    const selecting = policies.filter(
      (p) => p.spec.ingress && matches(p.spec.podSelector.matchLabels, serverPod),
    );
    expect(selecting).toHaveLength(1);
    const [rule, ...more] = selecting[0]!.spec.ingress;
    expect(more).toEqual([]);
    expect(rule.ports).toEqual([{ port: 5432, protocol: 'TCP' }]);
    expect(rule.from).toEqual([
      {
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'tenantdb' } },
        podSelector: {
          matchExpressions: [
            {
              key: 'app.kubernetes.io/name',
              operator: 'In',
              values: ['database-worker', 'database-service'],
            },
          ],
        },
      },
      { namespaceSelector: { matchLabels: { 'tenantdb.io/tenant-apps': 'true' } } },
    ]);
  });

  it('lets only our three processes reach the catalog and Redis', () => {
    const policy = named('NetworkPolicy', 'catalog-and-queue')!;
    expect(policy.spec.podSelector.matchExpressions).toEqual([
      { key: 'app.kubernetes.io/component', operator: 'In', values: ['catalog', 'queue'] },
    ]);
    expect(policy.spec.ingress).toHaveLength(1);
    expect(policy.spec.ingress[0].from).toEqual([
      {
        podSelector: {
          matchExpressions: [
            {
              key: 'app.kubernetes.io/name',
              operator: 'In',
              values: ['database-service', 'instance-service', 'database-worker'],
            },
          ],
        },
      },
    ]);
    expect(
      ofKind('NetworkPolicy').some(
        (p) =>
          p.metadata.namespace === 'tenantdb' &&
          Object.keys(p.spec.podSelector).length === 0 &&
          !p.spec.ingress,
      ),
    ).toBe(true);
    // In-cluster catalog / Redis (dev overlay) carry the labels the policy selects.
    for (const name of ['tenantdb-catalog', 'tenantdb-redis']) {
      const w = named('StatefulSet', name) ?? named('Deployment', name);
      if (w)
        expect(['catalog', 'queue']).toContain(
          w.spec.template.metadata.labels['app.kubernetes.io/component'],
        );
    }
  });

  it('ships the alert rules and the dashboard as ConfigMaps, byte for byte', async () => {
    const prom = named('ConfigMap', 'tenantdb-prometheus')!.data;
    const dash = named('ConfigMap', 'tenantdb-grafana-dashboard')!.data;
    expect(prom['tenantdb.rules.yml']).toBe(
      await readFile(resolve(here, 'base/monitoring/tenantdb.rules.yml'), 'utf8'),
    );
    expect(dash['tenantdb-dashboard.json']).toBe(
      await readFile(resolve(here, 'base/monitoring/tenantdb-dashboard.json'), 'utf8'),
    );
  });
});

describe('k8s/base/secret.template.yaml', () => {
  it('is a valid Secret naming exactly the keys the Deployments reference, with placeholders only', async () => {
    const [secret] = parseAllDocuments(
      await readFile(resolve(here, 'base/secret.template.yaml'), 'utf8'),
    ).map((d) => d.toJS() as KubeObject);
    await validateObject(secret!);
    const keys = Object.keys(secret!.stringData).sort();
    expect(keys).toEqual(Object.keys(SECRET_SAMPLES).sort());
    for (const value of Object.values(secret!.stringData as Record<string, string>))
      expect(value).toMatch(/^<.*>$/);
    if (!skip) {
      const referenced = new Set<string>();
      for (const d of rendered.get('base')!.filter((o) => o.kind === 'Deployment'))
        for (const e of d.spec.template.spec.containers[0].env ?? [])
          if (e.valueFrom?.secretKeyRef?.name === 'tenantdb-secrets')
            referenced.add(e.valueFrom.secretKeyRef.key);
      expect([...referenced].sort()).toEqual(keys);
    }
  });
});

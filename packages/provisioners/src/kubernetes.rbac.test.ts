// k8s/base renders with kustomize, its RBAC objects validate against the Kubernetes schema, and
// the Role grants exactly what the kubernetes driver calls (KUBERNETES_API_ACCESS), in the
// namespace its servers live in, to the worker's ServiceAccount.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loadAllYaml } from '@kubernetes/client-node';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { describe, expect, it } from 'vitest';
import { KUBERNETES_API_ACCESS } from './kubernetes.api';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const run = promisify(execFile);

async function kustomize(): Promise<{ objects: Record<string, unknown>[] } | { skip: string }> {
  try {
    const { stdout } = await run('kubectl', ['kustomize', resolve(repoRoot, 'k8s/base')]);
    return { objects: loadAllYaml(stdout) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { skip: 'kubectl is not installed' };
    throw err;
  }
}

const rendered = await kustomize();
if ('skip' in rendered) {
  console.warn(`SKIPPED k8s/base RBAC test: ${rendered.skip} (needs kubectl with kustomize)`);
}

describe.skipIf('skip' in rendered)('k8s/base worker RBAC', () => {
  const objects = 'objects' in rendered ? rendered.objects : [];
  const byKind = (kind: string) => objects.filter((o) => o.kind === kind);

  it('renders a ServiceAccount, a Role and a RoleBinding that validate', () => {
    // The base holds the whole deployment (k8s/k8s.test.ts checks the rest); RBAC is one of each.
    const rbac = objects.filter((o) => ['Role', 'RoleBinding', 'ServiceAccount'].includes(o.kind as string));
    expect(rbac.map((o) => o.kind).sort()).toEqual(['Role', 'RoleBinding', 'ServiceAccount']);
    new ServiceAccount(byKind('ServiceAccount')[0] as never).validate();
    new Role(byKind('Role')[0] as never).validate();
    new RoleBinding(byKind('RoleBinding')[0] as never).validate();
  });

  it('grants exactly the verbs and resources the driver uses, in the servers namespace, to the worker', () => {
    const role = byKind('Role')[0] as {
      metadata: { name: string; namespace: string };
      rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    };
    expect(role.metadata.namespace).toBe('tenantdb-servers');
    const granted = role.rules
      .flatMap((r) =>
        r.apiGroups.flatMap((g) => r.resources.map((res) => `${g}/${res}: ${[...r.verbs].sort().join(',')}`)),
      )
      .sort();
    const used = KUBERNETES_API_ACCESS.map(
      (a) => `${a.apiGroup}/${a.resource}: ${[...a.verbs].sort().join(',')}`,
    ).sort();
    expect(granted).toEqual(used);

    const binding = byKind('RoleBinding')[0] as {
      metadata: { namespace: string };
      roleRef: { kind: string; name: string };
      subjects: { kind: string; name: string; namespace: string }[];
    };
    const account = byKind('ServiceAccount')[0] as { metadata: { name: string; namespace: string } };
    expect(binding.metadata.namespace).toBe(role.metadata.namespace);
    expect(binding.roleRef).toMatchObject({ kind: 'Role', name: role.metadata.name });
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: account.metadata.name, namespace: account.metadata.namespace },
    ]);
  });
});

// cnpg mode's object: one CloudNativePG Cluster per server, as a pure function of a server spec
// and the driver's options.
import { Cluster } from '@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1/Cluster';
import {
  effectiveLimits,
  type KubernetesObjectOptions,
  kubernetesSettings,
  labelsFor,
  resources,
  secretNameFor,
} from './kubernetes.objects';
import type { ServerSpec } from './provisioner';

/** cnpg mode: one CloudNativePG Cluster (one instance); the operator makes pods, PVCs, Services. */
export function buildCnpgCluster(spec: ServerSpec, options: KubernetesObjectOptions): Cluster {
  const labels = labelsFor(spec);
  const limits = effectiveLimits(spec, options);
  return new Cluster({
    metadata: { name: spec.name, namespace: options.namespace, labels },
    spec: {
      instances: 1,
      imageName: options.image,
      inheritedMetadata: { labels },
      postgresql: { parameters: kubernetesSettings(spec, options) },
      // The platform's admin is a managed role of its own, not the operator's `postgres` superuser.
      enableSuperuserAccess: false,
      managed: {
        roles: [
          {
            name: spec.adminUser,
            ensure: 'present',
            login: true,
            superuser: true,
            passwordSecret: { name: secretNameFor(spec.name) },
          },
        ],
      },
      storage: {
        size: `${limits.storageGb}Gi`,
        ...(options.storageClass ? { storageClass: options.storageClass } : {}),
      },
      resources: resources(spec, options),
      ...(Object.keys(options.nodeSelector).length
        ? { affinity: { nodeSelector: { ...options.nodeSelector } } }
        : {}),
      primaryUpdateStrategy: 'unsupervised',
    },
  });
}

// statefulset mode's objects: a StatefulSet of one pod (its PVC from the volumeClaimTemplate) and
// its headless Service, as pure functions of a server spec and the driver's options.
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import { Service } from 'kubernetes-models/v1/Service';
import {
  effectiveLimits,
  K8S_LABELS,
  type KubernetesObjectOptions,
  kubernetesSettings,
  labelsFor,
  mebibytes,
  POSTGRES_PORT,
  resources,
  secretNameFor,
  tlsSecretNameFor,
} from './kubernetes.objects';
import type { ServerSpec } from './provisioner';
import { tlsSettings } from './tls';
import { postgresArgs } from './tuning';

const PGDATA_MOUNT = '/var/lib/postgresql/data';
const PGDATA = `${PGDATA_MOUNT}/pgdata`;
const SECRET_MOUNT = '/etc/tenantdb/admin';
const TLS_MOUNT = '/etc/tenantdb/tls';
/** TLS settings and pg_hba pointed at the mounted TLS Secret (ServerSpec.tls). */
function tlsArgs(spec: ServerSpec): Record<string, string> {
  if (!spec.tls) return {};
  return {
    ...tlsSettings({ cert: `${TLS_MOUNT}/server.crt`, key: `${TLS_MOUNT}/server.key` }),
    hba_file: `${TLS_MOUNT}/pg_hba.conf`,
  };
}

/** The claim the StatefulSet's volumeClaimTemplate `data` makes for its only pod. */
export const claimNameFor = (name: string) => `data-${name}-0`;

/** The StatefulSet's governing Service; headless, so `<name>.<namespace>.svc` is the pod. */
export function buildHeadlessService(spec: ServerSpec, options: KubernetesObjectOptions): Service {
  return new Service({
    metadata: { name: spec.name, namespace: options.namespace, labels: labelsFor(spec) },
    spec: {
      clusterIP: 'None',
      selector: selectorFor(spec),
      ports: [{ name: 'postgres', port: POSTGRES_PORT, targetPort: 'postgres', protocol: 'TCP' }],
    },
  });
}

function selectorFor(spec: ServerSpec): Record<string, string> {
  return { [K8S_LABELS.instance]: spec.name, [K8S_LABELS.serverId]: spec.serverId };
}

function pgIsReady(spec: ServerSpec, over: Partial<IProbe>): IProbe {
  return {
    // Accepting connections, without a password: the platform's own readiness is a real login.
    exec: { command: ['pg_isready', '-U', spec.adminUser, '-d', 'postgres', '-h', '127.0.0.1'] },
    periodSeconds: 10,
    timeoutSeconds: 5,
    ...over,
  };
}

export function buildStatefulSet(spec: ServerSpec, options: KubernetesObjectOptions): StatefulSet {
  const labels = labelsFor(spec);
  const limits = effectiveLimits(spec, options);
  const uid = options.runAsUser;
  const container: IContainer = {
    name: 'postgres',
    image: options.image,
    args: postgresArgs({ ...kubernetesSettings(spec, options), ...tlsArgs(spec) }),
    env: [
      { name: 'POSTGRES_USER', value: spec.adminUser },
      // The password is a mounted file; the object names the secret, never the value.
      { name: 'POSTGRES_PASSWORD_FILE', value: `${SECRET_MOUNT}/password` },
      { name: 'POSTGRES_DB', value: 'postgres' },
      { name: 'PGDATA', value: PGDATA },
    ],
    ports: [{ name: 'postgres', containerPort: POSTGRES_PORT, protocol: 'TCP' }],
    resources: resources(spec, options),
    securityContext: {
      runAsNonRoot: true,
      runAsUser: uid,
      runAsGroup: uid,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    },
    // initdb and crash recovery may take a while: the startup probe holds the others off.
    startupProbe: pgIsReady(spec, { periodSeconds: 5, failureThreshold: 120 }),
    readinessProbe: pgIsReady(spec, { failureThreshold: 3 }),
    livenessProbe: pgIsReady(spec, { failureThreshold: 6 }),
    volumeMounts: [
      { name: 'data', mountPath: PGDATA_MOUNT },
      { name: 'admin', mountPath: SECRET_MOUNT, readOnly: true },
      { name: 'dshm', mountPath: '/dev/shm' },
      ...(spec.tls ? [{ name: 'tls', mountPath: TLS_MOUNT, readOnly: true }] : []),
    ],
  };
  return new StatefulSet({
    metadata: { name: spec.name, namespace: options.namespace, labels },
    spec: {
      replicas: 1,
      serviceName: spec.name,
      selector: { matchLabels: selectorFor(spec) },
      podManagementPolicy: 'OrderedReady',
      updateStrategy: { type: 'RollingUpdate' },
      persistentVolumeClaimRetentionPolicy: {
        whenDeleted: options.volumeRemoval === 'delete' ? 'Delete' : 'Retain',
        whenScaled: 'Retain',
      },
      template: {
        metadata: { labels },
        spec: {
          securityContext: {
            runAsNonRoot: true,
            runAsUser: uid,
            runAsGroup: uid,
            fsGroup: uid,
            fsGroupChangePolicy: 'OnRootMismatch',
            seccompProfile: { type: 'RuntimeDefault' },
          },
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: 60,
          ...(Object.keys(options.nodeSelector).length ? { nodeSelector: { ...options.nodeSelector } } : {}),
          containers: [container],
          volumes: [
            {
              name: 'admin',
              secret: {
                secretName: secretNameFor(spec.name),
                items: [{ key: 'password', path: 'password' }],
                defaultMode: 0o440,
              },
            },
            // Root-owned with the pod's fsGroup, 0440: a key file Postgres accepts (root, at most 0640).
            ...(spec.tls
              ? [
                  {
                    name: 'tls',
                    secret: {
                      secretName: tlsSecretNameFor(spec.name),
                      items: [
                        { key: 'tls.crt', path: 'server.crt' },
                        { key: 'tls.key', path: 'server.key' },
                        { key: 'pg_hba.conf', path: 'pg_hba.conf' },
                      ],
                      defaultMode: 0o440,
                    },
                  },
                ]
              : []),
            // The container runtime's default /dev/shm (64 MB) is too small for parallel queries.
            {
              name: 'dshm',
              emptyDir: {
                medium: 'Memory',
                sizeLimit: mebibytes(Math.max(64, Math.floor((limits.memoryMb ?? 1024) / 4))),
              },
            },
          ],
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: 'data', labels },
          spec: {
            accessModes: ['ReadWriteOnce'],
            ...(options.storageClass ? { storageClassName: options.storageClass } : {}),
            resources: { requests: { storage: `${limits.storageGb}Gi` } },
          },
        },
      ],
    },
  });
}

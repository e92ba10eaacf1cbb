// The kubernetes driver's TLS (statefulset mode), against the in-test fake of the API paths it
// uses (../test/kube-api-fake.ts, which refuses a kubernetes.io/tls Secret without its keys as
// the API server does): a kubernetes.io/tls Secret with the certificate, key and pg_hba, mounted
// 0440 and named in the postgres arguments, removed with the server. Not exercised against a real
// cluster: whether Postgres starts with the mounted key is the local and swarm suites' check.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type KubeApiFake, startKubeApiFake } from '../test/kube-api-fake';
import { createKubernetesProvisioner, type KubernetesProvisionerOptions } from './kubernetes';
import type { ServerSpec } from './provisioner';

const NS = 'tenantdb-servers';
let fake: KubeApiFake;
beforeAll(async () => {
  fake = await startKubeApiFake();
});
afterAll(async () => {
  await fake.close();
});
afterEach(() => {
  expect(fake.unexpected).toEqual([]);
});

const driverWith = (overrides: Partial<KubernetesProvisionerOptions> = {}) =>
  createKubernetesProvisioner({
    kubeConfig: fake.kubeConfig(),
    namespace: NS,
    mode: 'statefulset',
    image: 'postgres:16-alpine',
    storageSizeGb: 10,
    runAsUser: 70,
    limits: {},
    requests: {},
    nodeSelector: {},
    volumeRemoval: 'delete',
    ...overrides,
  });

const keyPem = '-----BEGIN PRIVATE KEY-----\nKEY-BODY\n-----END PRIVATE KEY-----\n';
const certPem = '-----BEGIN CERTIFICATE-----\nCERT-BODY\n-----END CERTIFICATE-----\n';
const spec = (name: string, tls = true): ServerSpec => ({
  serverId: `00000000-0000-4000-8000-${name.padStart(12, '0').slice(-12)}`,
  name,
  serverType: 'shared',
  adminUser: 'tenantdb_admin',
  adminPassword: `secret-of-${name}-that-is-long-enough`,
  maxInstances: 5,
  cpuLimit: null,
  memoryLimitMb: null,
  storageSizeGb: null,
  ...(tls ? { tls: { certPem, keyPem } } : {}),
});
const decode = (v: string) => Buffer.from(v, 'base64').toString('utf8');

describe('kubernetes driver TLS', () => {
  it('names the Service DNS names for the certificate; none in cnpg mode', () => {
    expect(driverWith().tlsHosts('pg-a')).toEqual(
      expect.arrayContaining([
        'pg-a.tenantdb-servers.svc',
        'pg-a.tenantdb-servers.svc.cluster.local',
        'pg-a',
      ]),
    );
    expect(driverWith({ mode: 'cnpg' }).tlsHosts('pg-a')).toEqual([]);
  });

  it('creates a kubernetes.io/tls Secret with the pg_hba, mounts it and points Postgres at it; remove deletes it', async () => {
    const driver = driverWith();
    await driver.create(spec('tls-a'));
    const secret = fake.objects('secrets', NS).find((o) => o.metadata.name === 'tls-a-tls')!;
    expect(secret.type).toBe('kubernetes.io/tls');
    expect(decode(secret.data['tls.crt'])).toBe(certPem);
    expect(decode(secret.data['tls.key'])).toBe(keyPem);
    expect(decode(secret.data['pg_hba.conf'])).toMatch(/^hostssl\s+all\s+all\s+all\s+scram-sha-256$/m);
    expect(secret.metadata.labels['tenantdb/server-id']).toBe(spec('tls-a').serverId);

    const sts = fake.objects('statefulsets', NS).find((o) => o.metadata.name === 'tls-a')!;
    const pod = sts.spec.template.spec;
    const container = pod.containers[0];
    expect(container.args).toEqual(
      expect.arrayContaining([
        'ssl=on',
        'ssl_cert_file=/etc/tenantdb/tls/server.crt',
        'ssl_key_file=/etc/tenantdb/tls/server.key',
        'hba_file=/etc/tenantdb/tls/pg_hba.conf',
      ]),
    );
    expect(container.volumeMounts).toContainEqual({
      name: 'tls',
      mountPath: '/etc/tenantdb/tls',
      readOnly: true,
    });
    const volume = pod.volumes.find((v: { name: string }) => v.name === 'tls');
    expect(volume.secret).toMatchObject({ secretName: 'tls-a-tls', defaultMode: 0o440 });
    // The key is in the Secret alone: not in the StatefulSet's env or arguments.
    expect(JSON.stringify(sts)).not.toContain('KEY-BODY');

    // A retried create adopts the Secret (409 with this server's labels).
    await driver.create(spec('tls-a'));
    await driver.remove('tls-a');
    expect(fake.objects('secrets', NS).map((o) => o.metadata.name)).not.toContain('tls-a-tls');
  });

  it('makes no TLS Secret, mount or setting for a spec without TLS', async () => {
    const driver = driverWith();
    await driver.create(spec('plain-a', false));
    expect(fake.objects('secrets', NS).map((o) => o.metadata.name)).not.toContain('plain-a-tls');
    const sts = fake.objects('statefulsets', NS).find((o) => o.metadata.name === 'plain-a')!;
    expect(sts.spec.template.spec.containers[0].args.some((a: string) => a.startsWith('ssl'))).toBe(false);
    await driver.remove('plain-a');
  });
});

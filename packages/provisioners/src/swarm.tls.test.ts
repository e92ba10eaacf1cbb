// What the swarm driver asks Docker for when a server serves TLS: the key, the certificate and
// pg_hba each as a Docker secret (the key owned by the image's postgres uid, 0600), Postgres
// pointed at them with -c arguments, and no TLS material in the env, labels or arguments.
import type Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import type { ServerSpec } from './provisioner';
import { buildServiceSpec, buildTlsSecretSpecs, type SwarmObjectOptions } from './swarm.objects';

const options: SwarmObjectOptions = {
  image: 'postgres:16-alpine',
  fleet: 'prod',
  publishMode: 'host',
  constraints: [],
  limits: {},
  reservations: {},
  restartDelayMs: 5000,
  volumeDriver: 'local',
  postgresUid: 999,
};
const keyPem = '-----BEGIN PRIVATE KEY-----\nTHE-SECRET-KEY-BODY\n-----END PRIVATE KEY-----\n';
const certPem = '-----BEGIN CERTIFICATE-----\nCERT-BODY\n-----END CERTIFICATE-----\n';
const spec: ServerSpec = {
  serverId: '3f1c1a52-9c8e-4a53-8c3f-1f0b2a7d9e10',
  name: 'pool-abc123',
  serverType: 'shared',
  adminUser: 'tenantdb_admin',
  adminPassword: 'a-very-secret-password-of-some-length',
  maxInstances: 5,
  cpuLimit: null,
  memoryLimitMb: null,
  storageSizeGb: null,
  tls: { certPem, keyPem },
};
const secret = { id: 'sec-admin', name: 'tenantdb-admin-x' };
const tlsSecrets = {
  key: { id: 'sec-key', name: 'tenantdb-tlsk-x' },
  cert: { id: 'sec-cert', name: 'tenantdb-tlsc-x' },
  hba: { id: 'sec-hba', name: 'tenantdb-hba-x' },
};
const container = (s: Docker.ServiceSpec) => (s.TaskTemplate as Docker.ContainerTaskSpec).ContainerSpec!;

describe('swarm TLS objects', () => {
  it('makes the key, the certificate and pg_hba secrets of their own, labelled, within Docker name limits', () => {
    const specs = buildTlsSecretSpecs(spec, 'prod');
    expect(specs.map((s) => s.role)).toEqual(['key', 'cert', 'hba']);
    for (const s of specs) {
      expect(s.spec.Name.length).toBeLessThanOrEqual(64);
      expect(s.spec.Labels['tenantdb.server-id']).toBe(spec.serverId);
    }
    const decoded = Object.fromEntries(
      specs.map((s) => [s.role, Buffer.from(s.spec.Data, 'base64').toString()]),
    );
    expect(decoded.key).toBe(keyPem);
    expect(decoded.cert).toBe(certPem);
    expect(decoded.hba).toMatch(/^hostssl\s+all\s+all\s+all\s+scram-sha-256$/m);
    expect(decoded.hba).toMatch(/^host\s+all\s+"tenantdb_admin"\s+all\s+scram-sha-256$/m);
    expect(decoded.hba).not.toMatch(/^host\s+all\s+all/m);
    expect(buildTlsSecretSpecs({ ...spec, tls: undefined }, 'prod')).toEqual([]);
  });

  it('mounts them as files, the key as the postgres uid with 0600, and turns ssl on with its own pg_hba', () => {
    const built = buildServiceSpec({ spec, options, secret, tlsSecrets, publishedPort: 25500 });
    const c = container(built);
    const files = Object.fromEntries((c.Secrets ?? []).map((s) => [s.SecretID, s.File]));
    expect(files['sec-key']).toEqual({ Name: 'tenantdb-tls-key', UID: '999', GID: '999', Mode: 0o600 });
    expect(files['sec-cert']).toMatchObject({ Name: 'tenantdb-tls-cert', Mode: 0o444 });
    expect(files['sec-hba']).toMatchObject({ Name: 'tenantdb-pg-hba', Mode: 0o444 });
    expect(c.Args).toEqual(
      expect.arrayContaining([
        'ssl=on',
        'ssl_cert_file=/run/secrets/tenantdb-tls-cert',
        'ssl_key_file=/run/secrets/tenantdb-tls-key',
        'hba_file=/run/secrets/tenantdb-pg-hba',
      ]),
    );
    const shown = JSON.stringify(built);
    expect(shown).not.toContain('THE-SECRET-KEY-BODY');
    expect(shown).not.toContain('CERT-BODY');
  });

  it('without TLS asks for no TLS secret and leaves ssl alone; TLS without its secrets is a bug', () => {
    const plain = buildServiceSpec({
      spec: { ...spec, tls: undefined },
      options,
      secret,
      publishedPort: 25500,
    });
    expect(container(plain).Secrets).toHaveLength(1);
    expect(container(plain).Args?.some((a) => a.startsWith('ssl'))).toBe(false);
    expect(() => buildServiceSpec({ spec, options, secret, publishedPort: 25500 })).toThrow(/TLS secrets/);
  });
});

// The kubernetes driver's calls against an in-test fake of exactly the API paths it uses
// (../test/kube-api-fake.ts): no Kubernetes API server can run on these machines. What this
// proves: the objects sent validate against the schema, the calls and their answers (201, 409,
// 404, 422) are handled as the driver means to, and nothing outside the declared verbs is called.
// What it cannot prove: how a real cluster's controllers, the CloudNativePG operator, storage or
// DNS behave (see docs/drivers.md).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { imagePullBackOff, type KubeApiFake, startKubeApiFake } from '../test/kube-api-fake';
import { createKubernetesProvisioner, type KubernetesProvisionerOptions } from './kubernetes';
import { PermanentProvisionError, type ServerSpec } from './provisioner';

const NS = 'tenantdb-servers';
let fake: KubeApiFake;

beforeAll(async () => {
  fake = await startKubeApiFake();
});
afterAll(async () => {
  await fake.close();
});
afterEach(() => {
  // Every call the driver made is one the fake implements and the Role grants.
  expect(fake.unexpected).toEqual([]);
});

function driverWith(overrides: Partial<KubernetesProvisionerOptions> = {}) {
  return createKubernetesProvisioner({
    kubeConfig: fake.kubeConfig(),
    namespace: NS,
    mode: 'statefulset',
    image: 'postgres:16-alpine',
    storageClass: 'fast-ssd',
    storageSizeGb: 10,
    runAsUser: 70,
    limits: {},
    requests: { cpus: 0.25, memoryMb: 256 },
    nodeSelector: { 'tenantdb/postgres': 'true' },
    volumeRemoval: 'delete',
    ...overrides,
  });
}

function spec(name: string, overrides: Partial<ServerSpec> = {}): ServerSpec {
  return {
    serverId: `00000000-0000-4000-8000-${name.padStart(12, '0').slice(-12)}`,
    name,
    serverType: 'shared',
    adminUser: 'tenantdb_admin',
    adminPassword: `secret-of-${name}-that-is-long-enough`,
    maxInstances: 50,
    connectionLimit: 40,
    cpuLimit: 2,
    memoryLimitMb: 4096,
    storageSizeGb: 50,
    settings: {},
    ...overrides,
  };
}

/** A delete by someone else (kubectl), straight to the API. */
async function rawDelete(prefix: string, resource: string, name: string) {
  const res = await fetch(`${fake.url}/${prefix}/namespaces/${NS}/${resource}/${name}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${fake.token}` },
  });
  expect(res.status).toBe(200);
  fake.requests.pop(); // not the driver's
}

const names = (resource: Parameters<KubeApiFake['objects']>[0]) =>
  fake
    .objects(resource, NS)
    .map((o) => o.metadata.name)
    .sort();

describe('kubernetes driver, statefulset mode', () => {
  it('provisioning → active → removed: create, read status, delete', async () => {
    const driver = driverWith();
    const s = spec('pool-one');
    const created = await driver.create(s);
    expect(created).toEqual({
      ref: 'pool-one',
      host: 'pool-one.tenantdb-servers.svc',
      port: 5432,
      image: 'postgres:16-alpine',
    });
    expect(names('secrets')).toEqual(['pool-one-admin']);
    expect(names('services')).toEqual(['pool-one']);
    expect(names('statefulsets')).toEqual(['pool-one']);
    const sts = fake.get('statefulsets', NS, 'pool-one')!;
    expect(JSON.stringify(sts)).not.toContain(s.adminPassword);
    expect(sts.spec.template.spec.containers[0].args).toContain('max_connections=2020');
    expect(sts.spec.volumeClaimTemplates[0].spec).toMatchObject({
      storageClassName: 'fast-ssd',
      resources: { requests: { storage: '50Gi' } },
    });

    // Provisioning: no pod yet, then a pod that is not ready.
    expect(await driver.inspect('pool-one')).toMatchObject({
      exists: true,
      running: false,
      reason: 'no pod yet',
      terminal: false,
    });
    fake.runStatefulSetController(NS, 'pool-one', {
      phase: 'Running',
      containerStatuses: [{ name: 'postgres', ready: false, restartCount: 0, state: { running: {} } }],
    });
    expect(await driver.inspect('pool-one')).toMatchObject({ running: false, terminal: false });
    // Active: the controller reports a ready replica.
    fake.setStatus('statefulsets', NS, 'pool-one', { replicas: 1, readyReplicas: 1 });
    expect(await driver.inspect('pool-one')).toEqual({
      exists: true,
      running: true,
      host: 'pool-one.tenantdb-servers.svc',
      port: 5432,
    });
    expect(await driver.list()).toEqual([
      { ref: 'pool-one', serverId: s.serverId, name: 'pool-one', running: true },
    ]);

    // Removed: the StatefulSet, its Service, its claim and its secret.
    expect(names('persistentvolumeclaims')).toEqual(['data-pool-one-0']);
    await driver.remove('pool-one');
    expect(names('statefulsets')).toEqual([]);
    expect(names('services')).toEqual([]);
    expect(names('secrets')).toEqual([]);
    expect(names('persistentvolumeclaims')).toEqual([]);
    expect(await driver.inspect('pool-one')).toEqual({ exists: false, running: false });
    expect(await driver.list()).toEqual([]);
    // 404 everywhere: already gone is success.
    await driver.remove('pool-one');
    const deletes = fake.requests.filter((r) => r.verb === 'delete');
    expect(deletes.every((r) => r.status === 200)).toBe(true);
  });

  it('409 on create adopts what this server made; the retry makes only what is missing', async () => {
    const s = spec('pool-two');
    // An earlier attempt died after the secret and the service: only those exist.
    await driverWith().create(s);
    await rawDelete('apis/apps/v1', 'statefulsets', 'pool-two');
    const uid = (resource: 'secrets' | 'services', name: string) =>
      fake.get(resource, NS, name)!.metadata.uid;
    const before = { secret: uid('secrets', 'pool-two-admin'), service: uid('services', 'pool-two') };
    const mark = fake.requests.length;
    const again = await driverWith().create(s);
    expect(again.host).toBe('pool-two.tenantdb-servers.svc');
    const creates = fake.requests.slice(mark).filter((r) => r.verb === 'create');
    expect(creates.map((r) => `${r.resource} ${r.status}`)).toEqual([
      'secrets 409',
      'services 409',
      'statefulsets 201',
    ]);
    expect({ secret: uid('secrets', 'pool-two-admin'), service: uid('services', 'pool-two') }).toEqual(
      before,
    );
    // And once more, everything exists: nothing new at all.
    const mark2 = fake.requests.length;
    await driverWith().create(s);
    expect(
      fake.requests
        .slice(mark2)
        .filter((r) => r.verb === 'create')
        .map((r) => r.status),
    ).toEqual([409, 409, 409]);
    await driverWith().remove('pool-two');
    expect(await driverWith().list()).toEqual([]);
  });

  it('never uses or deletes objects without its labels, or another server’s', async () => {
    const driver = driverWith();
    // Someone else's StatefulSet with a server's name.
    fake.put('statefulsets', NS, { metadata: { name: 'pool-three', labels: { app: 'theirs' } }, spec: {} });
    const s = spec('pool-three');
    await expect(driver.create(s)).rejects.toThrow(PermanentProvisionError);
    await expect(driver.remove('pool-three')).rejects.toThrow(/not managed by tenantdb/);
    expect(fake.get('statefulsets', NS, 'pool-three')?.metadata.labels).toEqual({ app: 'theirs' });
    expect(await driver.inspect('pool-three')).toEqual({ exists: false, running: false });
    // It refused before making anything of its own.
    expect(await driver.list()).toEqual([]);
    expect(names('secrets')).toEqual([]);
    // A namesake Service of someone else's survives the removal of a server of ours.
    const mine = spec('pool-four');
    await driver.create(mine);
    fake.put('services', NS, { metadata: { name: 'pool-four', labels: { app: 'theirs' } }, spec: {} });
    await driver.remove('pool-four');
    expect(fake.get('services', NS, 'pool-four')?.metadata.labels).toEqual({ app: 'theirs' });
    expect(fake.get('statefulsets', NS, 'pool-four')).toBeUndefined();
    // A server id that is not this one's: refused, not adopted.
    const other = spec('pool-five');
    await driver.create(other);
    await expect(driver.create({ ...other, serverId: spec('other-id').serverId })).rejects.toThrow(
      /not managed by tenantdb for this server/,
    );
    await driver.remove('pool-five');
    await rawDelete('apis/apps/v1', 'statefulsets', 'pool-three');
    await rawDelete('api/v1', 'services', 'pool-four');
  });

  it('reports why a pod cannot start, and says when it never will', async () => {
    const driver = driverWith({ image: 'registry.example/postgres:does-not-exist' });
    const s = spec('pool-six');
    await driver.create(s);
    fake.runStatefulSetController(
      NS,
      'pool-six',
      imagePullBackOff('registry.example/postgres:does-not-exist'),
    );
    const state = await driver.inspect('pool-six');
    expect(state).toMatchObject({ exists: true, running: false, terminal: true });
    expect(state.reason).toMatch(/ImagePullBackOff.*manifest unknown/);
    await driver.remove('pool-six');
    expect(names('persistentvolumeclaims')).toEqual([]);
  });

  it('keeps the claim when the policy says so, and lists a half-removed server until it is gone', async () => {
    const keep = driverWith({ volumeRemoval: 'keep' });
    await keep.create(spec('pool-seven'));
    fake.runStatefulSetController(NS, 'pool-seven');
    expect(fake.get('statefulsets', NS, 'pool-seven')!.spec.persistentVolumeClaimRetentionPolicy).toEqual({
      whenDeleted: 'Retain',
      whenScaled: 'Retain',
    });
    await keep.remove('pool-seven');
    expect(names('persistentvolumeclaims')).toEqual(['data-pool-seven-0']);
    expect(await keep.list()).toEqual([]); // kept claims are not leftovers to clean up
    await rawDelete('api/v1', 'persistentvolumeclaims', 'data-pool-seven-0'); // the operator's call

    const driver = driverWith();
    const s = spec('pool-eight');
    await driver.create(s);
    // Someone deleted the StatefulSet by hand: its secret and service are still listed.
    await rawDelete('apis/apps/v1', 'statefulsets', 'pool-eight');
    expect(await driver.list()).toEqual([
      { ref: 'pool-eight', serverId: s.serverId, name: 'pool-eight', running: false },
    ]);
    await driver.remove('pool-eight');
    expect(await driver.list()).toEqual([]);
  });
});

describe('kubernetes driver, cnpg mode', () => {
  it('creates a Cluster and its superuser secret; ready instances make it active; delete removes both', async () => {
    const driver = driverWith({ mode: 'cnpg', image: 'ghcr.io/cloudnative-pg/postgresql:16', runAsUser: 26 });
    const s = spec('ded-one', { serverType: 'dedicated', maxInstances: 1, connectionLimit: 200 });
    const created = await driver.create(s);
    expect(created.host).toBe('ded-one-rw.tenantdb-servers.svc');
    const cluster = fake.get('clusters', NS, 'ded-one')!;
    expect(cluster.spec).toMatchObject({
      instances: 1,
      imageName: 'ghcr.io/cloudnative-pg/postgresql:16',
      postgresql: { parameters: { max_connections: '220' } },
      managed: {
        roles: [{ name: 'tenantdb_admin', superuser: true, passwordSecret: { name: 'ded-one-admin' } }],
      },
      storage: { size: '50Gi', storageClass: 'fast-ssd' },
    });
    expect(fake.get('secrets', NS, 'ded-one-admin')!.type).toBe('kubernetes.io/basic-auth');
    expect(names('statefulsets')).toEqual([]);

    fake.setStatus('clusters', NS, 'ded-one', {
      phase: 'Setting up primary',
      instances: 1,
      readyInstances: 0,
    });
    const starting = await driver.inspect('ded-one');
    expect(starting).toMatchObject({ exists: true, running: false, terminal: false });
    expect(starting.reason).toMatch(/^Setting up primary; no pod yet/);
    fake.setStatus('clusters', NS, 'ded-one', { phase: 'Cluster in healthy state', readyInstances: 1 });
    expect(await driver.inspect('ded-one')).toMatchObject({
      running: true,
      host: 'ded-one-rw.tenantdb-servers.svc',
    });
    expect(await driver.list()).toEqual([
      { ref: 'ded-one', serverId: s.serverId, name: 'ded-one', running: true },
    ]);

    await driver.remove('ded-one');
    expect(names('clusters')).toEqual([]);
    expect(names('secrets').filter((n) => n.startsWith('ded-one'))).toEqual([]);
    await driver.remove('ded-one');
  });

  it('an object the API refuses as invalid (422) is a permanent failure', async () => {
    // Options come from validated configuration; this one slips through to the schema check.
    const driver = driverWith({ runAsUser: 1.5 });
    const err = await driver.create(spec('pool-ten')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentProvisionError);
    expect((err as Error).message).toMatch(/creating StatefulSet tenantdb-servers\/pool-ten: HTTP 422/);
    await driver.remove('pool-ten');
    expect(names('secrets').filter((n) => n.startsWith('pool-ten'))).toEqual([]);
  });
});

describe('kubernetes driver, the API itself', () => {
  it('authenticates with the kubeconfig token and names the error when the API answers otherwise', async () => {
    const kc = fake.kubeConfig();
    kc.users[0] = { ...kc.users[0]!, token: 'wrong' };
    const driver = createKubernetesProvisioner({
      kubeConfig: kc,
      namespace: NS,
      mode: 'statefulset',
      image: 'postgres:16-alpine',
      storageSizeGb: 1,
      runAsUser: 70,
      limits: {},
      requests: {},
      nodeSelector: {},
      volumeRemoval: 'delete',
    });
    await expect(driver.list()).rejects.toThrow(/HTTP 401/);
    await expect(driver.create(spec('pool-nine'))).rejects.toThrow(
      /reading StatefulSet tenantdb-servers\/pool-nine: HTTP 401/,
    );
  });
});

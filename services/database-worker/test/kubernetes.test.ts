// The worker with TENANTDB_DRIVERS=kubernetes against the in-test Kubernetes API fake
// (@tenantdb/provisioners/testing), configured the way an operator would: a kubeconfig file.
// No Postgres can start behind a fake API, so this covers the way in (the capacity planner's pool
// becomes a Secret, a headless Service and a StatefulSet) and the way out of a server that never
// starts: the pod's terminal state ends provisioning at once with its reason, everything made is
// deleted, one attempt. A real login on a real cluster is not exercised anywhere (docs/drivers.md).
import { imagePullBackOff, type KubeApiFake, startKubeApiFake } from '@tenantdb/provisioners/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { type Fleet, startFleet, waitFor } from './harness';

const NS = 'tenantdb-servers';
let fleet: Fleet | undefined;
let fake: KubeApiFake | undefined;

afterEach(async () => {
  await fleet?.close();
  await fake?.close();
  fleet = fake = undefined;
});

describe('the kubernetes driver in the fleet (fake API)', () => {
  it('a pool whose image cannot be pulled: objects created, then error with the reason and everything deleted', async () => {
    fake = await startKubeApiFake();
    fleet = await startFleet({
      replicas: 1,
      env: {
        TENANTDB_DRIVERS: 'kubernetes',
        TENANTDB_K8S_KUBECONFIG: await fake.kubeconfigFile(),
        TENANTDB_K8S_NAMESPACE: NS,
        TENANTDB_K8S_STORAGE_CLASS: 'fast-ssd',
      },
    });
    const f = fleet;
    const k8s = fake;

    // The planner's start-up run makes a pool; the worker creates its objects through the API.
    await f.waitForServer((servers) => servers.length === 1, 30_000);
    const [row] = await f.servers();
    await waitFor(
      async () => k8s.get('statefulsets', NS, row!.name) !== undefined,
      30_000,
      'the StatefulSet',
    );
    expect(k8s.get('secrets', NS, `${row!.name}-admin`)?.metadata.labels['tenantdb/server-id']).toBe(row!.id);
    expect(k8s.get('services', NS, row!.name)?.spec.clusterIP).toBe('None');
    const sts = k8s.get('statefulsets', NS, row!.name)!;
    expect(sts.spec.template.spec.containers[0].args).toContain(
      `max_connections=${row!.max_instances * 40 + 20}`,
    );
    expect(JSON.stringify(sts)).not.toContain(f.adminPassword((await f.servers())[0]!));
    // The row gets its address just after the objects exist (a loaded CI host saw it a moment late).
    await f.waitForServer((servers) => servers[0]?.status === 'initializing', 30_000);
    expect((await f.servers())[0]).toMatchObject({
      status: 'initializing',
      host: `${row!.name}.${NS}.svc`,
      port: 5432,
      orchestrator_ref: row!.name,
    });

    // Its pod never gets its image: the worker sees it within a watch interval, not at the ready timeout.
    const started = Date.now();
    k8s.runStatefulSetController(NS, row!.name, imagePullBackOff('postgres:16-alpine'));
    await f.waitForServer((servers) => servers[0]?.status === 'error', 30_000);
    expect(Date.now() - started).toBeLessThan(15_000);
    const [failed] = await f.servers();
    expect(failed!.status_reason).toMatch(/cannot start: .*ImagePullBackOff.*manifest unknown/);
    for (const resource of ['secrets', 'services', 'statefulsets', 'persistentvolumeclaims'] as const) {
      expect(k8s.objects(resource, NS), resource).toEqual([]);
    }
    const job = await f.queues.queue('provisioning').getJob(`provision-server-${row!.id}`);
    expect(job?.attemptsMade).toBe(1);
    expect(k8s.unexpected).toEqual([]);
  });
});

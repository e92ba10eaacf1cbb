// The worker's driver configuration: parsed once, every problem reported together, and
// createDrivers builds exactly the enabled drivers in the configured order (the first one is what
// the capacity planner provisions with).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@tenantdb/config';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config';
import { createDrivers } from '../src/worker';

const base = {
  DATABASE_URL: 'postgres://x@127.0.0.1/x',
  REDIS_URL: 'redis://127.0.0.1:6379',
  TENANTDB_ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 1).toString('base64')}`,
};

describe('driver configuration', () => {
  it('defaults to the local driver alone; blanks mean unset', () => {
    const config = loadConfig({ ...base, TENANTDB_SWARM_CPU_LIMIT: '', TENANTDB_K8S_IMAGE: ' ' });
    expect(config.TENANTDB_DRIVERS).toEqual(['local']);
    expect(config.TENANTDB_SWARM_CPU_LIMIT).toBeUndefined();
    expect(config.TENANTDB_K8S_IMAGE).toBeUndefined();
    expect(config.TENANTDB_SWARM_PORT_RANGE).toEqual({ from: 25432, to: 26431 });
    expect([...createDrivers(config).keys()]).toEqual(['local']);
  });

  it('parses lists, numbers and label maps', () => {
    const config = loadConfig({
      ...base,
      TENANTDB_DRIVERS: 'swarm, local',
      TENANTDB_SWARM_CONSTRAINTS: 'node.labels.tenantdb.postgres==true, node.role!=manager',
      TENANTDB_SWARM_CPU_LIMIT: '1.5',
      TENANTDB_SWARM_MEMORY_LIMIT_MB: '2048',
      TENANTDB_SWARM_PORT_RANGE: '30000-30100',
      TENANTDB_K8S_NODE_SELECTOR: 'tenantdb/postgres=true,topology.kubernetes.io/zone=eu-1a',
    });
    expect(config.TENANTDB_DRIVERS).toEqual(['swarm', 'local']);
    expect(config.TENANTDB_SWARM_CONSTRAINTS).toEqual([
      'node.labels.tenantdb.postgres==true',
      'node.role!=manager',
    ]);
    expect(config.TENANTDB_SWARM_CPU_LIMIT).toBe(1.5);
    expect(config.TENANTDB_SWARM_MEMORY_LIMIT_MB).toBe(2048);
    expect(config.TENANTDB_SWARM_PORT_RANGE).toEqual({ from: 30000, to: 30100 });
    expect(config.TENANTDB_K8S_NODE_SELECTOR).toEqual({
      'tenantdb/postgres': 'true',
      'topology.kubernetes.io/zone': 'eu-1a',
    });
  });

  it('reports every problem at once, cross-field ones included', () => {
    let problems: string[] = [];
    try {
      loadConfig({
        ...base,
        TENANTDB_DRIVERS: 'swarm,nomad',
        TENANTDB_SWARM_DOCKER_HOST: 'http://x',
        TENANTDB_SWARM_PUBLISH_MODE: 'none',
        TENANTDB_SWARM_PORT_RANGE: '9-1',
        TENANTDB_SWARM_CONSTRAINTS: 'anything goes',
        TENANTDB_SWARM_MEMORY_LIMIT_MB: '1.5',
        TENANTDB_K8S_MODE: 'operator',
        TENANTDB_K8S_NODE_SELECTOR: 'no-value',
      });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      problems = (err as ConfigError).problems;
    }
    expect(problems.map((p) => p.split(/[.:]/)[0]).sort()).toEqual([
      'TENANTDB_DRIVERS',
      'TENANTDB_K8S_MODE',
      'TENANTDB_K8S_NODE_SELECTOR',
      'TENANTDB_SWARM_CONSTRAINTS',
      'TENANTDB_SWARM_DOCKER_HOST',
      'TENANTDB_SWARM_MEMORY_LIMIT_MB',
      'TENANTDB_SWARM_NETWORK',
      'TENANTDB_SWARM_PORT_RANGE',
    ]);
    expect(() => loadConfig({ ...base, TENANTDB_DRIVERS: 'local,local' })).toThrow(/listed twice/);
    expect(() => loadConfig({ ...base, TENANTDB_DRIVERS: ' ' })).toThrow(/at least one driver/);
  });

  it('createDrivers builds the enabled drivers, in order, without contacting anything', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tenantdb-cfg-'));
    try {
      const kubeconfig = join(dir, 'kubeconfig');
      await writeFile(
        kubeconfig,
        [
          'apiVersion: v1',
          'kind: Config',
          'clusters: [{ name: c, cluster: { server: "https://k8s.example:6443" } }]',
          'users: [{ name: u, user: { token: "t" } }]',
          'contexts: [{ name: x, context: { cluster: c, user: u } }]',
          'current-context: x',
          '',
        ].join('\n'),
      );
      const config = loadConfig({
        ...base,
        TENANTDB_DRIVERS: 'kubernetes,swarm,local',
        TENANTDB_K8S_KUBECONFIG: kubeconfig,
        TENANTDB_SWARM_DOCKER_HOST: 'tcp://manager.example:2375',
      });
      const drivers = createDrivers(config);
      expect([...drivers.keys()]).toEqual(['kubernetes', 'swarm', 'local']);
      expect([...drivers.values()].map((d) => d.driver)).toEqual(['kubernetes', 'swarm', 'local']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// compose/docker-compose.yml (dev stack) and compose/stack.yml (Swarm) parse, every service has a
// healthcheck and resource limits, every process gets the variables its config schema requires
// (secrets from compose/.env, or on Swarm from Docker secrets through *_FILE), and the monitoring
// files they mount exist and scrape every process. stack.yml is also checked by the Docker CLI's
// own loader (`docker stack config`, schema included) when the installed CLI has that command.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { PROCESSES, type ProcessName, SECRET_SAMPLES, variablesOf } from '../k8s/processes';

const here = fileURLToPath(new URL('.', import.meta.url));
const run = promisify(execFile);

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML, checked field by field
type Doc = any;
const load = async (file: string): Promise<Doc> =>
  parse(await readFile(resolve(here, file), 'utf8'), { merge: true });

/** Values for the variables the files interpolate, as compose/.env or the deploy shell gives them. */
const SHELL: Record<string, string> = {
  CATALOG_PASSWORD: 'x'.repeat(32),
  GRAFANA_ADMIN_PASSWORD: 'x'.repeat(32),
  TENANTDB_IMAGE: 'registry.example.com/tenantdb:0.1.0',
  DOCKER_GID: '999',
  ...SECRET_SAMPLES,
};

/** Compose's interpolation: ${X}, ${X:-default}, ${X:?error}. */
function interpolate(value: unknown, shell: Record<string, string> = SHELL): string {
  return String(value).replace(/\$\{([A-Z0-9_]+)(?::([-?])([^}]*))?\}/g, (_m, name, op, arg) => {
    const v = shell[name];
    if (v !== undefined) return v;
    if (op === '-') return arg;
    throw new Error(`\${${name}} has no value and no default`);
  });
}

const envOf = (service: Doc): Record<string, string> =>
  Array.isArray(service.environment)
    ? Object.fromEntries(service.environment.map((e: string) => e.split(/=(.*)/s).slice(0, 2)))
    : { ...(service.environment ?? {}) };

const files = {
  'docker-compose.yml': await load('docker-compose.yml'),
  'stack.yml': await load('stack.yml'),
};

describe.each(Object.keys(files) as (keyof typeof files)[])('compose/%s', (file) => {
  const doc = files[file];
  const services = Object.entries(doc.services as Record<string, Doc>);

  it('runs the whole stack', () => {
    expect(Object.keys(doc.services).sort()).toEqual(
      [
        'catalog',
        'redis',
        'database-service',
        'instance-service',
        'database-worker',
        'prometheus',
        'grafana',
      ].sort(),
    );
    expect(doc.services['database-worker'].deploy.replicas).toSatisfy(
      (r: unknown) => Number(interpolate(r)) >= 2,
    );
    // BullMQ needs every key kept.
    expect(doc.services.redis.command.join(' ')).toContain('--maxmemory-policy noeviction');
  });

  it('gives every service a healthcheck and resource limits', () => {
    for (const [name, service] of services) {
      expect(service.healthcheck?.test?.length, `${name}: healthcheck`).toBeGreaterThan(1);
      expect(service.healthcheck.disable, name).not.toBe(true);
      const limits = service.deploy?.resources?.limits ?? {};
      expect(Number(limits.cpus), `${name}: cpu limit`).toBeGreaterThan(0);
      expect(String(limits.memory ?? ''), `${name}: memory limit`).toMatch(/^\d+[MG]$/);
    }
  });

  it('gives every process exactly variables its schema reads, and all it requires', () => {
    for (const name of Object.keys(PROCESSES) as ProcessName[]) {
      const service = doc.services[name];
      expect(service.command, name).toEqual([name]);
      expect(service.read_only, name).toBe(true);
      const env: Record<string, string> = {};
      for (const [key, raw] of Object.entries(envOf(service))) {
        const value = interpolate(raw);
        if (key.endsWith('_FILE')) {
          // A Docker secret: the entrypoint reads the file into the variable without _FILE.
          const variable = key.slice(0, -'_FILE'.length);
          const secret = /^\/run\/secrets\/(.+)$/.exec(value)?.[1];
          expect(service.secrets, `${name}: ${key} names a secret it does not mount`).toContain(secret);
          expect(doc.secrets[secret!], `${secret} is not declared`).toEqual({ external: true });
          env[variable] = SECRET_SAMPLES[variable] ?? value;
        } else env[key] = value;
      }
      for (const key of Object.keys(env))
        expect(variablesOf(name), `${name} does not read ${key}`).toContain(key);
      const parsed = PROCESSES[name].schema.safeParse(env);
      expect(parsed.error?.issues ?? [], name).toEqual([]);
    }
  });

  it('mounts monitoring files that exist, and scrapes every process', async () => {
    const mounted: string[] = [
      ...services.flatMap(([, s]) =>
        (s.volumes ?? []).map((v: string) => v.split(':')[0]).filter((v: string) => v.startsWith('.')),
      ),
      ...Object.values((doc.configs ?? {}) as Record<string, { file: string }>).map((c) => c.file),
    ];
    expect(mounted).toContain('../k8s/base/monitoring/tenantdb.rules.yml');
    expect(mounted).toContain('../k8s/base/monitoring/tenantdb-dashboard.json');
    for (const m of mounted) expect(existsSync(resolve(here, m)), m).toBe(true);

    const promFile = mounted.find((m) => /prometheus\/prometheus[.a-z]*\.yml$/.test(m))!;
    const prom = parse(await readFile(resolve(here, promFile), 'utf8'));
    const targets = JSON.stringify(prom.scrape_configs);
    for (const [name, { port }] of Object.entries(PROCESSES))
      expect(targets, `${name} is not scraped`).toMatch(
        new RegExp(`${name}[^,]*,?[^}]*${port}|${name}:${port}`),
      );
    expect(prom.rule_files).toEqual(['/etc/prometheus/rules/tenantdb.rules.yml']);
  });
});

describe('compose/dev-env.sh', () => {
  it('writes a compose/.env with which every process of docker-compose.yml starts', async (ctx) => {
    const openssl = await run('openssl', ['version']).catch(() => undefined);
    if (!openssl) {
      ctx.skip(); // openssl is not installed
      return;
    }
    const { stdout } = await run('sh', [resolve(here, 'dev-env.sh')]);
    const shell = Object.fromEntries(
      stdout
        .split('\n')
        .filter((l) => /^[A-Z_]+=/.test(l))
        .map((l) => l.split(/=(.*)/s).slice(0, 2) as [string, string]),
    );
    const compose = files['docker-compose.yml'];
    const interpolated = Object.entries(compose.services as Record<string, Doc>).flatMap(([, s]) =>
      Object.values(envOf(s)),
    );
    // Every required variable of the file has a value.
    for (const raw of interpolated) interpolate(raw, shell);
    for (const name of Object.keys(PROCESSES) as ProcessName[]) {
      const env = Object.fromEntries(
        Object.entries(envOf(compose.services[name])).map(([k, v]) => [k, interpolate(v, shell)]),
      );
      expect(PROCESSES[name].schema.safeParse(env).error?.issues ?? [], name).toEqual([]);
    }
    expect(shell.GRAFANA_ADMIN_PASSWORD).toMatch(/^[0-9a-f]{48}$/);
  });
});

describe('compose/stack.yml on Swarm', () => {
  const stack = files['stack.yml'];

  it('uses an overlay network, external secrets only, and rolls updates back on failure', () => {
    expect(stack.networks.backend.driver).toBe('overlay');
    expect(stack.networks['tenantdb-db']).toEqual({ external: true });
    for (const [name, secret] of Object.entries(stack.secrets))
      expect(secret, name).toEqual({ external: true });
    for (const [name, service] of Object.entries(stack.services as Record<string, Doc>)) {
      expect(service.deploy.replicas, name).toBeDefined();
      expect(service.deploy.update_config?.failure_action, name).toBe('rollback');
      expect(service.deploy.rollback_config, name).toBeDefined();
      expect(service.deploy.restart_policy?.condition, name).toBe('any');
      // No secret value in the file: only *_FILE references.
      for (const [key, value] of Object.entries(envOf(service)))
        if (/TOKEN|SECRET|PASSWORD|KEYS|DATABASE_URL/.test(key))
          expect(`${key}=${value}`).toMatch(/_FILE=\/run\/secrets\//);
    }
  });

  it('ships an allow-list for callbacks that instance-service accepts', () => {
    const raw = envOf(stack.services['instance-service']).TENANTDB_CALLBACK_ALLOWED_HOSTS;
    expect(raw).toBeDefined();
    const parsed = PROCESSES['instance-service'].schema.shape.TENANTDB_CALLBACK_ALLOWED_HOSTS.safeParse(
      interpolate(raw),
    );
    expect(parsed.error?.issues ?? []).toEqual([]);
    expect(parsed.data?.length).toBeGreaterThan(0);
    // The deploy shell can set its own.
    expect(interpolate(raw, { TENANTDB_CALLBACK_ALLOWED_HOSTS: 'portal,10.0.1.0/24' })).toBe(
      'portal,10.0.1.0/24',
    );
  });

  it('runs workers on managers with the Docker socket, servers on the overlay network', () => {
    const worker = stack.services['database-worker'];
    expect(worker.deploy.placement.constraints).toContain('node.role==manager');
    expect(worker.volumes).toContain('/var/run/docker.sock:/var/run/docker.sock');
    expect(envOf(worker)).toMatchObject({
      TENANTDB_DRIVERS: 'swarm',
      TENANTDB_SWARM_PUBLISH_MODE: 'none',
      TENANTDB_SWARM_NETWORK: 'tenantdb-db',
    });
    expect(worker.networks).toContain('tenantdb-db');
    expect(stack.services['database-service'].networks).toContain('tenantdb-db');
    expect(worker.user).toMatch(/^10001:/);
  });

  it("passes the Docker CLI's own stack loader (schema and interpolation)", async (ctx) => {
    const help = await run('docker', ['stack', 'config', '--help']).catch(() => undefined);
    if (!help) {
      ctx.skip(); // the installed docker CLI has no `stack config` (added in Docker 20.10 … 23)
      return;
    }
    const { stdout } = await run('docker', ['stack', 'config', '-c', resolve(here, 'stack.yml')], {
      env: { ...process.env, ...SHELL },
    });
    expect(parse(stdout).services['database-worker'].deploy.replicas).toBe(2);
  });
});

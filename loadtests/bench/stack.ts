// Everything the benchmark measures, started from nothing and torn down in reverse order: the
// catalog Postgres, a private Redis, two pool Postgres servers (default settings: fsync on), and
// database-service in its own process listening on a loopback port, with the pools registered
// through its admin API. database-worker and instance-service processes are started on demand by
// the scenarios that need one (startWorker, startInstanceService); every local-driver server the
// workers make lives under one root that the teardown empties through the driver.
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCatalogDb, migrateToLatest } from '@tenantdb/catalog';
import { createQueues, type Queues } from '@tenantdb/jobs';
import { createLocalProvisioner, type LocalProvisioner } from '@tenantdb/provisioners';
import { createSecretBox, generatePassword, type SecretBox } from '@tenantdb/secrets';
import {
  adminQuery,
  freePort,
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
  /**
   * Where the pool servers' data directories go (a directory of their own is made inside, removed
   * at teardown); by default the bench directory, beside the catalog's.
   */
  poolParentDir?: string;
  log: (line: string) => void;
}

export interface PoolServer extends RunningPostgres {
  id: string;
  name: string;
}

/**
 * A process started from a service's own main.ts: a database-worker replica
 * (services/database-worker/src/main.ts) or instance-service (services/instance-service/src/main.ts).
 */
export interface WorkerProcess {
  pid: number;
  /** Its listener: /metrics, /healthz and /readyz (and instance-service's API). */
  address: string;
  logFile: string;
  alive(): boolean;
  /** SIGTERM (graceful: jobs in hand finish), SIGKILL if it has not exited in time. Idempotent. */
  stop(): Promise<void>;
}

/** A catalog database and the database-service process that serves it, the real pools registered. */
export interface CatalogService {
  /** The service's catalog database. */
  catalogUrl: string;
  /** The real pool servers, with the ids of their rows in this catalog. */
  pools: PoolServer[];
  serviceUrl: string;
  /** Allocate-scoped client used by the scenarios. */
  api: ApiClient;
  adminToken: string;
  /** The service's stdout/stderr (warn and above). */
  serviceLogFile: string;
  /** Whether the service process is still alive (it must be, until teardown). */
  serviceAlive(): boolean;
  servicePid: number;
}

export interface Stack extends CatalogService {
  dir: string;
  catalog: RunningPostgres;
  redis: RunningRedis;
  serviceEnv: Readonly<Record<string, string>>;
  /**
   * Another catalog database on the same catalog Postgres (`database`, lower-case letters and _),
   * migrated, served by a database-service process of its own with the same settings and its own
   * queue prefix, the real pool servers registered through it: two catalogs measured side by side.
   * `stop` ends the process early; teardown stops it otherwise.
   */
  startCatalogService(database: string): Promise<CatalogService & { stop(): Promise<void> }>;
  /** The service's secret box (same keys): decrypts what the catalog stores, e.g. admin passwords. */
  secrets: SecretBox;
  /** A producer on the service's queues (same Redis and prefix), for jobs the bench enqueues. */
  queues: Queues;
  /** The local driver over the root every worker provisions under. */
  local: LocalProvisioner;
  /** Where scenarios put Postgres servers they make by hand (raw baselines); stopped at teardown. */
  rawDir: string;
  /** Starts a database-worker process with the stack's environment plus `env`. */
  startWorker(env: Record<string, string>): Promise<WorkerProcess>;
  /** Log files of every worker started so far. */
  workerLogFiles: string[];
  /**
   * Starts instance-service (its main.ts: migrations of its schema, API, job consumer) with the
   * stack's catalog, Redis and database-service, plus `env`; callers authenticate with portalToken.
   */
  startInstanceService(env: Record<string, string>): Promise<WorkerProcess>;
  /** The signup portal's token for instance-service. */
  portalToken: string;
  /** Log files of every instance-service started so far. */
  instanceServiceLogFiles: string[];
  /**
   * Clean-up for what a scenario made outside the stack (swarm services, say), run at teardown
   * in reverse order of registration — also when the watchdog or a signal cut the run short.
   */
  atTeardown(name: string, run: () => Promise<unknown>, timeoutMs?: number): void;
  close(): Promise<string[]>;
}

/** LIFO cleanup that keeps going when a step fails and reports what failed. */
class Teardown {
  private readonly steps: { name: string; run: () => Promise<unknown>; timeoutMs: number }[] = [];
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

  add(name: string, run: () => Promise<unknown>, onExit?: () => void, timeoutMs = 60_000) {
    this.steps.push({ name, run, timeoutMs });
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
        await withTimeout(step.run(), step.timeoutMs, step.name);
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
  // Every data directory lives under one bench directory (the pools' under poolParentDir when it is
  // given), so a last-resort rmSync at exit removes them all. Running as root, the postgres user
  // must be able to traverse it.
  const dir = await mkdtemp(join(tmpdir(), 'tenantdb-bench-'));
  await chmod(dir, 0o755);
  teardown.add(
    'bench directory',
    () => rm(dir, { recursive: true, force: true }),
    () => rmSync(dir, { recursive: true, force: true }),
  );

  let poolDir = dir;
  if (opts.poolParentDir) {
    const made = await mkdtemp(join(opts.poolParentDir, 'tenantdb-bench-pools-'));
    await chmod(made, 0o755);
    // Registered before the servers' step, so it runs after they have stopped (LIFO).
    teardown.add(
      'pool servers directory',
      () => rm(made, { recursive: true, force: true }),
      () => rmSync(made, { recursive: true, force: true }),
    );
    poolDir = made;
    log(`pool servers' data under ${made}`);
  }

  log('starting catalog Postgres, Redis and 2 pool servers (default settings, fsync on)');
  // Stopped side by side too: each stop is a shutdown checkpoint, and the pools end up holding
  // hundreds of tenant databases whose files are then deleted.
  const pgServers = new Map<string, RunningPostgres>();
  teardown.add(
    'postgres servers',
    async () => {
      const stopped = await Promise.allSettled(
        [...pgServers].map(([label, server]) =>
          server.destroy().catch((err: unknown) => {
            throw new Error(`postgres ${label}: ${err instanceof Error ? err.message : String(err)}`);
          }),
        ),
      );
      const failed = stopped.find((s) => s.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
    },
    undefined,
    180_000,
  );
  const startPg = async (label: string, parentDir: string) => {
    const server = await startPostgres({ password: generatePassword(), parentDir });
    pgServers.set(label, server);
    return server;
  };
  // initdb is the slow part of starting; the three run side by side.
  const started = await Promise.allSettled([
    startPg('catalog', dir),
    ...opts.poolCapacities.map((_, i) => startPg(`pool-${i + 1}`, poolDir)),
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

  const adminToken = `adm_${randomBytes(24).toString('hex')}`;
  const allocateToken = `alc_${randomBytes(24).toString('hex')}`;
  const encryptionKey = randomBytes(32);
  const serviceEnv: Record<string, string> = {
    REDIS_URL: redis.url,
    DATABASE_SERVICE_HOST: '127.0.0.1',
    DATABASE_SERVICE_PORT: '0',
    TENANTDB_ADMIN_TOKEN: adminToken,
    TENANTDB_ALLOCATE_TOKEN: allocateToken,
    TENANTDB_ENCRYPTION_KEYS: `k1:${encryptionKey.toString('base64')}`,
    TENANTDB_QUEUE_PREFIX: 'bench',
    // Neither may dominate or cap what is measured: warn-level logs, a limit never reached.
    LOG_LEVEL: 'warn',
    TENANTDB_RATE_LIMIT_PER_MINUTE: '1000000000',
    ...opts.serviceEnv,
  };

  /** Creates and migrates `database`, starts a database-service on it and registers the pools. */
  const serveCatalog = async (
    database: string,
    env: Record<string, string>,
  ): Promise<CatalogService & { stop(): Promise<void> }> => {
    if (!/^[a-z_]+$/.test(database)) throw new Error(`bad catalog database name ${database}`);
    log(`migrating catalog ${database}`);
    await adminQuery(catalog.url(), `CREATE DATABASE ${database}`);
    const catalogUrl = withDatabase(catalog.url(), database);
    const migrator = createCatalogDb({ url: catalogUrl, poolSize: 1 });
    try {
      await migrateToLatest(migrator);
    } finally {
      await migrator.destroy();
    }
    log(`starting database-service on ${database}`);
    const serviceLogFile = join(dir, `database-service-${database}.log`);
    const { child, address } = await startService(
      { ...serviceEnv, DATABASE_URL: catalogUrl, ...env },
      serviceLogFile,
    );
    let alive = true;
    child.once('exit', () => {
      alive = false;
    });
    let stopping: Promise<void> | undefined;
    const stop = () => {
      stopping ??= stopService(child);
      return stopping;
    };
    teardown.add(`database-service on ${database}`, stop, () => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    const api = new ApiClient(address, allocateToken, opts.clientConnections);
    teardown.add(`api client of ${database}`, () => api.close());

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
      pools.push({ ...pg, id: res.body.pool.id, name });
    }
    log(`database-service on ${database} at ${address}, ${pools.length} pools registered`);
    return {
      catalogUrl,
      pools,
      serviceUrl: address,
      api,
      adminToken,
      serviceLogFile,
      serviceAlive: () => alive,
      servicePid: child.pid!,
      stop,
    };
  };
  const main = await serveCatalog('tenantdb', {});
  serviceEnv.DATABASE_URL = main.catalogUrl;
  const catalogUrl = main.catalogUrl;

  const queues = createQueues({ redisUrl: redis.url, prefix: serviceEnv.TENANTDB_QUEUE_PREFIX! });
  teardown.add('bench queues', () => queues.close());

  // Local-driver servers are removed through the driver (which stops each postmaster) before the
  // bench directory goes. Registered here so that it runs after every worker has stopped.
  const local = createLocalProvisioner({ root: join(dir, 'local-servers') });
  const rawDir = join(dir, 'raw-servers');
  await mkdir(rawDir, { mode: 0o755 });
  await chmod(rawDir, 0o755);
  teardown.add(
    'local servers',
    async () => {
      const left = await local.list();
      // Their data goes with them: an immediate shutdown spares each one a checkpoint of it (the
      // warm pools hold hundreds of new databases), then the driver removes each as usual.
      stopPostmastersUnder(local.root, 'SIGQUIT');
      const t0 = performance.now();
      await Promise.all(left.map((object) => local.remove(object.ref)));
      await rm(local.root, { recursive: true, force: true });
      if (left.length)
        log(`removed ${left.length} local server(s) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      // Scenarios stop what they start by hand; this only catches one that failed half-way.
      stopPostmastersUnder(rawDir, 'SIGQUIT');
    },
    () => {
      // Exiting without close(): an immediate shutdown of every postmaster; the directory goes after.
      stopPostmastersUnder(local.root, 'SIGQUIT');
      stopPostmastersUnder(rawDir, 'SIGQUIT');
    },
    // Deleting hundreds of databases' files is slow on this disk (tens of seconds).
    180_000,
  );

  const workerLogFiles: string[] = [];
  const workerEnv: Record<string, string> = {
    DATABASE_URL: catalogUrl,
    REDIS_URL: redis.url,
    TENANTDB_ENCRYPTION_KEYS: serviceEnv.TENANTDB_ENCRYPTION_KEYS!,
    TENANTDB_QUEUE_PREFIX: serviceEnv.TENANTDB_QUEUE_PREFIX!,
    TENANTDB_LOCAL_ROOT: local.root,
    DATABASE_WORKER_HOST: '127.0.0.1',
    // What a worker has in hand at the end (refills) is of no use any more: stop soon.
    TENANTDB_SHUTDOWN_DEADLINE_MS: '3000',
    LOG_LEVEL: 'warn',
  };
  /** A service's main.ts in a process of its own, stopped (SIGTERM, graceful) at teardown. */
  const startChild = async (
    program: MainProgram,
    env: Record<string, string>,
    logFile: string,
  ): Promise<WorkerProcess> => {
    const { child, address } = await startMainProcess(program, env, logFile);
    let stopping: Promise<void> | undefined;
    const stop = () => {
      stopping ??= stopChild(child, () => child.kill('SIGTERM'), 15_000);
      return stopping;
    };
    teardown.add(`${program.name} (${logFile})`, stop, () => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    return {
      pid: child.pid!,
      address,
      logFile,
      alive: () => child.exitCode === null && child.signalCode === null,
      stop,
    };
  };
  const startWorker = (env: Record<string, string>): Promise<WorkerProcess> => {
    const logFile = join(dir, `database-worker-${workerLogFiles.length + 1}.log`);
    workerLogFiles.push(logFile);
    return startChild(WORKER_MAIN, { ...workerEnv, ...env }, logFile);
  };

  const portalToken = `ptl_${randomBytes(24).toString('hex')}`;
  const instanceServiceLogFiles: string[] = [];
  const instanceServiceEnv: Record<string, string> = {
    DATABASE_URL: catalogUrl,
    REDIS_URL: redis.url,
    INSTANCE_SERVICE_HOST: '127.0.0.1',
    DATABASE_SERVICE_URL: main.serviceUrl,
    TENANTDB_PORTAL_TOKEN: portalToken,
    TENANTDB_ALLOCATE_TOKEN: allocateToken,
    TENANTDB_CALLBACK_SECRET: `cbs_${randomBytes(24).toString('hex')}`,
    TENANTDB_QUEUE_PREFIX: serviceEnv.TENANTDB_QUEUE_PREFIX!,
    TENANTDB_SHUTDOWN_DEADLINE_MS: '3000',
    // As for database-service: neither may dominate or cap what is measured.
    LOG_LEVEL: 'warn',
    TENANTDB_RATE_LIMIT_PER_MINUTE: '1000000000',
  };
  const startInstanceService = (env: Record<string, string>): Promise<WorkerProcess> => {
    const logFile = join(dir, `instance-service-${instanceServiceLogFiles.length + 1}.log`);
    instanceServiceLogFiles.push(logFile);
    return startChild(INSTANCE_SERVICE_MAIN, { ...instanceServiceEnv, ...env }, logFile);
  };

  return {
    dir,
    catalog,
    catalogUrl,
    redis,
    pools: main.pools,
    serviceUrl: main.serviceUrl,
    serviceEnv,
    api: main.api,
    adminToken,
    serviceLogFile: main.serviceLogFile,
    serviceAlive: main.serviceAlive,
    servicePid: main.servicePid,
    startCatalogService: (database) =>
      serveCatalog(database, { TENANTDB_QUEUE_PREFIX: `bench-${database.replaceAll('_', '-')}` }),
    secrets: createSecretBox([{ id: 'k1', key: encryptionKey }]),
    queues,
    local,
    rawDir,
    startWorker,
    workerLogFiles,
    startInstanceService,
    portalToken,
    instanceServiceLogFiles,
    atTeardown: (name, run, timeoutMs) => teardown.add(name, run, undefined, timeoutMs),
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

function stopService(child: ChildProcess): Promise<void> {
  return stopChild(
    child,
    () => {
      if (child.connected) child.send({ type: 'shutdown' });
      else child.kill('SIGTERM');
    },
    12_000,
  );
}

/** Asks a child to stop, kills it after `killAfterMs`, resolves once it has exited. */
async function stopChild(child: ChildProcess, ask: () => void, killAfterMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  ask();
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  await exited;
  clearTimeout(timer);
}

const READY_MS = 90_000;

/** A service's main.ts and the variable that sets its port. */
interface MainProgram {
  name: string;
  main: URL;
  portVariable: string;
}

const WORKER_MAIN: MainProgram = {
  name: 'database-worker',
  main: new URL('../../services/database-worker/src/main.ts', import.meta.url),
  portVariable: 'DATABASE_WORKER_PORT',
};
const INSTANCE_SERVICE_MAIN: MainProgram = {
  name: 'instance-service',
  main: new URL('../../services/instance-service/src/main.ts', import.meta.url),
  portVariable: 'INSTANCE_SERVICE_PORT',
};

/**
 * Forks a service's own main.ts (config from the environment, migrations, consumers, schedules,
 * graceful shutdown on SIGTERM) on a free loopback port, and waits until its /readyz answers 200.
 */
async function startMainProcess(
  program: MainProgram,
  env: Record<string, string>,
  logFile: string,
): Promise<{ child: ChildProcess; address: string }> {
  const port = await freePort();
  const address = `http://127.0.0.1:${port}`;
  const fd = openSync(logFile, 'a');
  // execArgv is inherited from the harness, so the child runs TypeScript through tsx as well.
  const child = fork(program.main, {
    env: { ...process.env, ...env, [program.portVariable]: String(port) },
    stdio: ['ignore', fd, fd, 'ipc'],
  });
  closeSync(fd);
  let exitCode: number | null | undefined;
  child.once('exit', (code) => {
    exitCode = code;
  });
  // Usually about 3 s; on a 2-core machine that other work kept at a load average of 14 a worker
  // took over 30 (database-service needed 32 s to listen in the same run).
  const deadline = Date.now() + READY_MS;
  try {
    for (;;) {
      if (exitCode !== undefined)
        throw new Error(`${program.name} exited (${exitCode}) while starting: ${tail(logFile)}`);
      const ready = await fetch(`${address}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ready) return { child, address };
      if (Date.now() > deadline)
        throw new Error(`${program.name} was not ready within ${READY_MS / 1000} s: ${tail(logFile)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await stopChild(child, () => child.kill('SIGTERM'), 5_000);
    throw err;
  }
}

/** Signals every postmaster whose data directory is <dir>/<name>/data (synchronous: exit-safe). */
function stopPostmastersUnder(dir: string, signal: NodeJS.Signals): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    try {
      const pid = Number.parseInt(readFileSync(join(dir, name, 'data', 'postmaster.pid'), 'utf8'), 10);
      if (pid > 0) process.kill(pid, signal);
    } catch {
      // no server there, or already gone
    }
  }
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

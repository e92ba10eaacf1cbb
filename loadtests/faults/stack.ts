// The stack a fault file breaks: `pnpm dev`'s wiring (packages/devstack: database-service,
// instance-service and two database-worker replicas as real processes, the local driver, a catalog
// Postgres) on free loopback ports in a temporary directory, with a Redis of the file's own so it
// can be restarted. `underLoad` runs one fault while the background load runs, settles, runs the
// reconciler, checks every invariant and records the result for docs/reliability.md.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCatalogDb } from '@tenantdb/catalog';
import { encryptionKeys } from '@tenantdb/config';
import { type DevStack, startDevStack } from '@tenantdb/devstack';
import { createQueues } from '@tenantdb/jobs';
import { createSecretBox } from '@tenantdb/secrets';
import { freePort, type TenantCredentials, waitForPort } from '@tenantdb/testkit';
import { expect, inject } from 'vitest';
import { type Acknowledged, checkInvariants, type InvariantReport } from './invariants';
import { type Load, type LoadOptions, startLoad } from './load';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Where each fault writes its result; the global teardown turns them into docs/reliability.md. */
    faultResultsDir: string;
  }
}

export interface FaultResult {
  /** When the fault started: the report lists faults in the order they ran. */
  order: number;
  fault: string;
  injected: string;
  requests: number;
  acknowledged: number;
  invariants: number;
  violations: string[];
  seconds: number;
}

export async function recordResult(result: FaultResult): Promise<void> {
  const file = join(inject('faultResultsDir'), `${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify(result));
}

/** Stack settings: small pools so the planner works under the load, short lock and stale times. */
const FAULT_ENV: Record<string, string> = {
  DATABASE_SERVICE_HOST: '127.0.0.1',
  INSTANCE_SERVICE_HOST: '127.0.0.1',
  DATABASE_WORKER_HOST: '127.0.0.1',
  TENANTDB_RATE_LIMIT_PER_MINUTE: '1000000',
  TENANTDB_RETRY_AFTER_SECONDS: '1',
  TENANTDB_POOL_MAX_INSTANCES: '30',
  TENANTDB_SHARED_HEADROOM: '5',
  TENANTDB_WARM_DATABASES: '1',
  TENANTDB_CAPACITY_INTERVAL_MS: '5000',
  // The suite runs the reconciler itself, once the fault is over (it repairs what a crash left).
  TENANTDB_RECONCILE_INTERVAL_MS: '3600000',
  TENANTDB_STALE_ALLOCATION_MS: '5000',
  TENANTDB_JOB_LOCK_MS: '5000',
  // Replicas re-install job schedules a Redis restarted empty has lost, this often.
  TENANTDB_SCHEDULE_CHECK_MS: '2000',
  TENANTDB_SHUTDOWN_DEADLINE_MS: '30000',
  TENANTDB_DATABASE_SERVICE_TIMEOUT_MS: '3000',
  TENANTDB_SERVER_SETTINGS: 'fsync=off,synchronous_commit=off',
  LOG_LEVEL: 'info',
};

/** A redis-server of the file's own that keeps its data across a restart (append-only file). */
export async function startDurableRedis() {
  const dir = await mkdtemp(join(tmpdir(), 'tenantdb-faults-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    const proc = spawn(
      'redis-server',
      [
        ...['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''],
        ...['--appendonly', 'yes', '--appendfsync', 'always', '--maxmemory-policy', 'noeviction'],
      ],
      { stdio: 'ignore' },
    );
    child = proc;
    await new Promise<void>((resolve, reject) => {
      proc.once('error', reject);
      proc.once('spawn', () => resolve());
    });
    await waitForPort(port, {
      what: "the fault suite's redis-server",
      gaveUp: () =>
        proc.exitCode !== null || proc.signalCode !== null
          ? `exited while starting (${proc.exitCode ?? proc.signalCode})`
          : undefined,
    });
  };
  /** SIGKILL (nothing flushed at exit: the append-only file already has every write) or SIGTERM. */
  const stop = async (signal: NodeJS.Signals = 'SIGKILL') => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill(signal);
    });
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    start,
    stop,
    /** Deletes what Redis persisted (while stopped): the next start is an empty Redis. */
    async wipe() {
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
    },
    async destroy() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export type FaultStack = Awaited<ReturnType<typeof startFaultStack>>;

export async function startFaultStack(env: Record<string, string> = {}) {
  const stateDir = await mkdtemp(join(tmpdir(), 'tenantdb-faults-'));
  const redis = await startDurableRedis();
  const output = new Map<string, string>();
  const unexpectedExits: string[] = [];
  const baseEnv = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !/^(TENANTDB_|DATABASE_|REDIS_|INSTANCE_SERVICE_|LOG_LEVEL)/.test(k),
    ),
  );
  let stack: DevStack;
  try {
    stack = await startDevStack({
      stateDir,
      redisUrl: redis.url,
      ports: {
        databaseService: await freePort(),
        instanceService: await freePort(),
        workers: [await freePort(), await freePort()],
      },
      baseEnv,
      env: { ...FAULT_ENV, ...env },
      waitForPool: false,
      // A process restarted under load on a busy 2-core machine can take well over a minute.
      startTimeoutMs: 180_000,
      output: (name, chunk) => output.set(name, (output.get(name) ?? '') + chunk.toString('utf8')),
      onUnexpectedExit: (name, code) => unexpectedExits.push(`${name} exited with ${code}`),
    });
  } catch (err) {
    // startDevStack has stopped what it started; its state (catalog data, servers) goes too.
    await redis.destroy();
    await rm(stateDir, { recursive: true, force: true });
    throw err;
  }
  const db = createCatalogDb({ url: stack.catalogUrl, poolSize: 4 });
  const secrets = createSecretBox(encryptionKeys.parse(stack.encryptionKeys));
  // Worker-style connection: it waits Redis out instead of failing while it restarts.
  const queues = createQueues({ redisUrl: redis.url, failFast: false });
  const acknowledged = new Map<string, Acknowledged>();
  // Every secret the stack generated (tokens, callback secret, catalog password, encryption key).
  const knownSecrets = new Set<string>(Object.values(stack.secrets));

  const servers = () => db.selectFrom('db_servers').selectAll().orderBy('created_at').execute();

  async function admin(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown) {
    const res = await fetch(`${stack.urls.databaseService}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${stack.secrets.adminToken}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    // biome-ignore lint/suspicious/noExplicitAny: a parsed JSON body, read field by field
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as any };
  }

  /** Until `active` pools with room hold at least n free slots and nothing is still starting. */
  async function waitForCapacity(freeSlots: number, timeoutMs = 120_000) {
    await waitUntil(
      async () => {
        const all = await servers();
        const free = all
          .filter((s) => s.status === 'active' && s.server_type === 'shared')
          .reduce((n, s) => n + s.max_instances - s.current_instances, 0);
        return free >= freeSlots && !all.some((s) => ['provisioning', 'initializing'].includes(s.status));
      },
      timeoutMs,
      `${freeSlots} free shared slots`,
    );
  }

  /** Enqueues reconcile and waits until a worker has finished it (its "reconcile done" line). */
  async function reconcile(timeoutMs = 120_000) {
    const runs = () =>
      [...output.entries()]
        .filter(([name]) => name.startsWith('database-worker'))
        .reduce((n, [, text]) => n + text.split('"msg":"reconcile done"').length - 1, 0);
    const before = runs();
    await queues.enqueue('reconcile', {});
    await waitUntil(async () => runs() > before, timeoutMs, 'reconcile to run');
  }

  /**
   * One fault under load: the load starts, `breakIt` breaks something and makes it whole again (or
   * leaves the stack serving without it), the load goes on for a while, stops, and every request
   * with an unknown outcome is settled. Then the reconciler runs and every invariant is checked.
   */
  async function underLoad(
    /** knownBugs: what the fault showed of a known, reported bug (filled in by breakIt). */
    fault: { name: string; injected: string; knownBugs?: string[] },
    breakIt: (load: Load) => Promise<void>,
    loadOptions: Partial<LoadOptions> = {},
  ): Promise<InvariantReport> {
    const started = Date.now();
    const load = startLoad({
      baseUrl: stack.urls.databaseService,
      token: stack.secrets.allocateToken,
      clients: 2,
      maxRequests: 60,
      pauseMs: 200,
      releaseShare: 0.7,
      ...loadOptions,
    });
    try {
      await load.progress(3);
      await breakIt(load);
      await load.progress(3);
    } finally {
      await load.stop();
    }
    // Creating/releasing rows a crash left behind are repaired once they are older than the
    // stale time; then every unknown outcome is asked again.
    await waitForCapacity(1);
    await sleep(Number(FAULT_ENV.TENANTDB_STALE_ALLOCATION_MS) + 1_000);
    await reconcile();
    const settleRequests = await load.settle();
    await reconcile();
    for (const [id, a] of load.acknowledged) acknowledged.set(id, a);
    const report = await check();
    const knownBugs = fault.knownBugs ?? [];
    await recordResult({
      order: started,
      fault: knownBugs.length ? `${fault.name} (known bug)` : fault.name,
      injected: fault.injected,
      requests: load.requests + settleRequests,
      acknowledged: load.acknowledged.size,
      invariants: report.checked.length,
      violations: [
        ...report.violations.map((v) => `${v.invariant}: ${v.detail}`),
        ...knownBugs.map((b) => `known bug: ${b}`),
      ],
      seconds: Math.round((Date.now() - started) / 1000),
    });
    return report;
  }

  /** POST /allocate as instance-service sends it (the allocate token): its status and answer. */
  async function allocate(ids: { instance_id: string; customer_id: string; plan_tier: string }) {
    const res = await fetch(`${stack.urls.databaseService}/api/database/allocate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.secrets.allocateToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(ids),
    });
    return {
      status: res.status,
      body: (await res.json()) as TenantCredentials & { db_server_id: string; tenant_database_id: string },
    };
  }

  /** Both database-workers at once: SIGKILLed, and started again. */
  const workerNames = ['database-worker-1', 'database-worker-2'] as const;
  const workers = {
    kill: async () => {
      await Promise.all(workerNames.map((n) => stack.process(n).stop('SIGKILL')));
    },
    start: async () => {
      await Promise.all(workerNames.map((n) => stack.process(n).start()));
    },
  };

  /** Every invariant, over every allocation acknowledged in this file so far. */
  function check(): Promise<InvariantReport> {
    return checkInvariants({
      db,
      secrets,
      serverRoot: stack.serverRoot,
      queues,
      logs: () => [...output.values()].join('\n'),
      knownSecrets,
      acknowledged: acknowledged.values(),
    });
  }

  return {
    stack,
    redis,
    db,
    queues,
    secrets,
    knownSecrets,
    acknowledged,
    servers,
    admin,
    allocate,
    workers,
    waitForCapacity,
    reconcile,
    underLoad,
    check,
    output: (name: string) => output.get(name) ?? '',
    /** Stops everything; every process's output is kept in a directory under tmp for a post-mortem. */
    async close() {
      const logDir = await mkdtemp(join(tmpdir(), 'tenantdb-faults-logs-'));
      for (const [name, text] of output) await writeFile(join(logDir, `${name}.log`), text);
      process.stdout.write(`fault stack logs: ${logDir}\n`);
      await queues.close().catch(() => {});
      await db.destroy().catch(() => {});
      await stack.destroy();
      await redis.destroy();
      expect(unexpectedExits, 'a process of the stack died without being told to').toEqual([]);
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
}

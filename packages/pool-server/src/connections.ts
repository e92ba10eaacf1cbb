// Admin connections to pool servers: one small pg.Pool per Postgres address (host:port), created on
// first use, replaced when the credentials used there change, closed on shutdown. The bound is per
// address, not per catalog row: two rows naming one address are one Postgres, and it gets
// maxPerServer admin connections from this process, not twice that.
import { isIP } from 'node:net';
import type { SecretBox } from '@tenantdb/secrets';
import pg from 'pg';

/** The catalog fields needed to reach a pool server as its admin. */
export interface PoolServerTarget {
  id: string;
  host: string | null;
  port: number | null;
  admin_user: string | null;
  admin_password_enc: string | null;
  admin_database: string;
}

export class PoolServerUnavailableError extends Error {
  constructor(
    readonly serverId: string,
    reason: string,
  ) {
    super(`pool server ${serverId} unavailable: ${reason}`);
    this.name = 'PoolServerUnavailableError';
  }
}

/** Too many requests already waiting on this server: not a sign the server is down. */
export class PoolServerBusyError extends Error {
  constructor(readonly serverId: string) {
    super(`pool server ${serverId} is busy; retry`);
    this.name = 'PoolServerBusyError';
  }
}

export interface PoolConnections {
  withClient<T>(server: PoolServerTarget, fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
  /**
   * `fn` on a fresh admin connection of its own, closed when it ends: what a real login check needs,
   * and what a pass over many servers uses so it leaves no idle connection behind on each. Not
   * counted in the per-address bound. Connection failures arrive as PoolServerUnavailableError.
   * `database`: another database than the admin one (a tenant's, for work inside it).
   */
  withOwnClient<T>(
    server: PoolServerTarget,
    fn: (client: pg.Client) => Promise<T>,
    opts?: { database?: string },
  ): Promise<T>;
  close(): Promise<void>;
}

export interface PoolConnectionOptions {
  /** Admin connections per server address; further callers queue for one. */
  maxPerServer?: number;
  /** How long a caller may queue for a connection before PoolServerBusyError. */
  queueTimeoutMs?: number;
  connectTimeoutMs?: number;
  statementTimeoutMs?: number;
  /** TLS on admin connections (TENANTDB_POOL_ADMIN_TLS); none without. */
  tls?: AdminTls;
}

/**
 * `prefer`: verify-full against the fleet CA where the server has a certificate from it, plain
 * text otherwise; `require`: TLS to every server, unverified where no fleet CA is known (libpq's
 * sslmode=require); `off`: plain text. `caOf` reads the CA that signed a server's certificate.
 */
export interface AdminTls {
  mode: 'off' | 'prefer' | 'require';
  caOf(serverId: string): Promise<string | undefined>;
}

/** How long a server's CA is remembered (a CA rotation reissues certificates over days). */
const CA_CACHE_MS = 60_000;

export function createPoolConnections(secrets: SecretBox, opts: PoolConnectionOptions = {}): PoolConnections {
  const pools = new Map<string, pg.Pool>();
  const maxPerServer = opts.maxPerServer ?? 4;
  // Queueing happens here, not in pg.Pool: pg.Pool's connectionTimeoutMillis also bounds the wait
  // for a free client, which would make a busy server look like an unreachable one.
  const gates = new Map<string, Gate>();
  const gateFor = (server: PoolServerTarget) => {
    const address = addressOf(server);
    let gate = gates.get(address);
    if (!gate) {
      gate = new Gate(maxPerServer);
      gates.set(address, gate);
    }
    return gate;
  };

  const cas = new Map<string, { at: number; ca: string | undefined }>();
  /** node-postgres' `ssl` for a server's admin connections under opts.tls. */
  const sslFor = async (server: PoolServerTarget): Promise<pg.ClientConfig['ssl']> => {
    const tls = opts.tls;
    if (!tls || tls.mode === 'off') return false;
    let known = cas.get(server.id);
    if (!known || Date.now() - known.at > CA_CACHE_MS) {
      known = { at: Date.now(), ca: await tls.caOf(server.id) };
      cas.set(server.id, known);
    }
    if (known.ca) {
      // SNI takes names only; an IP host is checked against the certificate's IP entries.
      const sni = server.host && !isIP(server.host) ? { servername: server.host } : {};
      return { ca: known.ca, rejectUnauthorized: true, ...sni };
    }
    return tls.mode === 'require' ? { rejectUnauthorized: false } : false;
  };

  const clientConfig = (server: PoolServerTarget, ssl: pg.ClientConfig['ssl']): pg.ClientConfig => {
    if (!server.host || !server.port || !server.admin_user || !server.admin_password_enc) {
      throw new PoolServerUnavailableError(server.id, 'address or admin credentials not known yet');
    }
    return {
      host: server.host,
      port: server.port,
      user: server.admin_user,
      password: secrets.decrypt(server.admin_password_enc, server.id),
      database: server.admin_database,
      application_name: 'tenantdb',
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 5_000,
      statement_timeout: opts.statementTimeoutMs ?? 60_000,
      ssl,
    };
  };

  const poolFor = (server: PoolServerTarget, ssl: pg.ClientConfig['ssl']): pg.Pool => {
    const address = addressOf(server);
    // Compared as decrypted: rows naming one address may hold the same password under different
    // ciphertexts (each encryption has its own IV, and a key rotation re-encrypts row by row).
    const config = clientConfig(server, ssl);
    const existing = pools.get(address);
    if (existing && sameLogin(existing.options, config)) return existing;
    if (existing) void existing.end().catch(() => {});
    const pool = new pg.Pool({ ...config, max: maxPerServer, idleTimeoutMillis: 30_000 });
    // A server going away must not crash the process: idle clients report to the pool, checked-out
    // ones to themselves (their next query fails and the pool discards them).
    pool.on('error', () => {});
    pool.on('connect', (client) => client.on('error', () => {}));
    pools.set(address, pool);
    return pool;
  };

  return {
    async withClient(server, fn) {
      const leave = await gateFor(server).enter(
        opts.queueTimeoutMs ?? 60_000,
        () => new PoolServerBusyError(server.id),
      );
      let client: pg.PoolClient;
      try {
        client = await poolFor(server, await sslFor(server)).connect();
      } catch (err) {
        leave();
        cas.delete(server.id); // a certificate reissued by a new CA is read again on the next try
        if (err instanceof PoolServerUnavailableError) throw err;
        throw new PoolServerUnavailableError(server.id, describePgError(err));
      }
      let broken: Error | undefined;
      try {
        return await fn(client);
      } catch (err) {
        if (isConnectionError(err)) {
          broken = err as Error;
          throw new PoolServerUnavailableError(server.id, describePgError(err));
        }
        throw err;
      } finally {
        client.release(broken);
        leave();
      }
    },
    async withOwnClient(server, fn, own = {}) {
      const client = new pg.Client({
        ...clientConfig(server, await sslFor(server)),
        ...(own.database ? { database: own.database } : {}),
      });
      client.on('error', () => {});
      try {
        try {
          await client.connect();
        } catch (err) {
          cas.delete(server.id);
          throw new PoolServerUnavailableError(server.id, describePgError(err));
        }
        return await fn(client);
      } catch (err) {
        if (isConnectionError(err)) throw new PoolServerUnavailableError(server.id, describePgError(err));
        throw err;
      } finally {
        await client.end().catch(() => {});
      }
    },
    async close() {
      await Promise.all([...pools.values()].map((pool) => pool.end().catch(() => {})));
      pools.clear();
    },
  };
}

/** Where the Postgres is: what the admin connection bound is counted by. */
function addressOf(server: PoolServerTarget): string {
  return `${server.host}:${server.port}`;
}

function sameLogin(a: pg.PoolConfig, b: pg.ClientConfig): boolean {
  return (
    a.user === b.user &&
    a.password === b.password &&
    a.database === b.database &&
    JSON.stringify(a.ssl ?? false) === JSON.stringify(b.ssl ?? false)
  );
}

/** A counting semaphore with a bounded wait. */
class Gate {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}

  async enter(timeoutMs: number, onTimeout: () => Error): Promise<() => void> {
    if (this.active >= this.max) {
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          this.waiting.splice(this.waiting.indexOf(wake), 1);
          reject(onTimeout());
        }, timeoutMs);
        this.waiting.push(wake);
      });
    } else {
      this.active++;
    }
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter; only when nobody waits is it freed.
      if (next) next();
      else this.active--;
    };
  }
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EPIPE',
]);

export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: string }).code ?? '';
  // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 08xxx connection exceptions
  return (
    CONNECTION_CODES.has(code) ||
    code.startsWith('08') ||
    code === '57P01' ||
    code === '57P02' ||
    code === '57P03' ||
    /Connection terminated|timeout expired|connection timeout/i.test(err.message)
  );
}

/** A short, secret-free description of a pg / network error: its code and first line, never the config. */
export function describePgError(err: unknown): string {
  if (!(err instanceof Error)) return 'unknown error';
  const code = (err as { code?: string }).code;
  const line = err.message.split('\n')[0]!.slice(0, 200);
  return code ? `${code}: ${line}` : line;
}

// Whether a tenant role logs in with a password: what settles a rotation a crash left half done
// (the catalog holds two candidate passwords and the role has at most one of them).
import { isIP } from 'node:net';
import pg from 'pg';
import { isConnectionError, type PoolServerTarget, PoolServerUnavailableError } from './connections';

/**
 * Logs in as the tenant (its own database, the given password) and runs SELECT 1, the way a
 * tenant does: over TLS verified against `caPem` when the server has a fleet certificate (tenant
 * roles may log in only over TLS there), in plain text otherwise. False when the server refuses
 * the login; PoolServerUnavailableError when it cannot be reached, as that says nothing about
 * the password.
 */
export async function tenantLogsIn(
  server: Pick<PoolServerTarget, 'id' | 'host' | 'port'>,
  tenant: { dbName: string; dbUser: string },
  password: string,
  opts: { caPem?: string | undefined; connectTimeoutMs?: number } = {},
): Promise<boolean> {
  if (!server.host || !server.port) throw new PoolServerUnavailableError(server.id, 'no address');
  const client = new pg.Client({
    host: server.host,
    port: server.port,
    database: tenant.dbName,
    user: tenant.dbUser,
    password,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5_000,
    ...(opts.caPem
      ? {
          ssl: {
            ca: opts.caPem,
            rejectUnauthorized: true,
            // SNI takes names only; an IP host is checked against the certificate's IP entries.
            ...(isIP(server.host) ? {} : { servername: server.host }),
          },
        }
      : {}),
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch (err) {
    if (isConnectionError(err)) {
      throw new PoolServerUnavailableError(server.id, (err as Error).message.split('\n')[0]!.slice(0, 200));
    }
    return false; // 28P01 wrong password, 28000 no such login, 3D000 no database, …
  } finally {
    await client.end().catch(() => {});
  }
}

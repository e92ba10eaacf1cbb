// Whether a tenant role logs in with a password: what settles a rotation a crash left half done
// (the catalog holds two candidate passwords and the role has at most one of them).
import pg from 'pg';
import { isConnectionError, type PoolServerTarget, PoolServerUnavailableError } from './connections';

/**
 * Logs in as the tenant (its own database, the given password) and runs SELECT 1. False when the
 * server refuses the login; PoolServerUnavailableError when it cannot be reached, as that says
 * nothing about the password.
 */
export async function tenantLogsIn(
  server: Pick<PoolServerTarget, 'id' | 'host' | 'port'>,
  tenant: { dbName: string; dbUser: string },
  password: string,
  connectTimeoutMs = 5_000,
): Promise<boolean> {
  if (!server.host || !server.port) throw new PoolServerUnavailableError(server.id, 'no address');
  const client = new pg.Client({
    host: server.host,
    port: server.port,
    database: tenant.dbName,
    user: tenant.dbUser,
    password,
    connectionTimeoutMillis: connectTimeoutMs,
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

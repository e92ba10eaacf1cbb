// Logging in as a tenant with the credentials an allocation returned: the check every suite makes.
import pg from 'pg';

export interface TenantCredentials {
  db_host: string;
  db_port: number;
  db_name: string;
  db_user: string;
  db_password: string;
}

/** Connects and runs SELECT 1; false on any failure (refused login, no such database, …). */
export async function canLogin(c: TenantCredentials): Promise<boolean> {
  const client = new pg.Client({
    host: c.db_host,
    port: c.db_port,
    database: c.db_name,
    user: c.db_user,
    password: c.db_password,
    connectionTimeoutMillis: 5_000,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

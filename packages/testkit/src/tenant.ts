// Logging in as a tenant with the credentials an allocation returned: the check every suite makes.
// It connects as a client following the answer would: with sslmode verify-full against the CA the
// answer carries when it carries one (a server tenantdb created refuses tenants without TLS).
import { isIP } from 'node:net';
import pg from 'pg';

export interface TenantCredentials {
  db_host: string;
  db_port: number;
  db_name: string;
  db_user: string;
  db_password: string;
  sslmode?: 'verify-full';
  ssl_root_cert?: string;
}

/**
 * node-postgres' `ssl` for an answer: sslmode verify-full is the CA, the host name checked
 * against the certificate, and no unauthorised server accepted. Undefined without TLS in the answer.
 */
export function tenantSsl(c: Pick<TenantCredentials, 'db_host' | 'sslmode' | 'ssl_root_cert'>) {
  if (c.sslmode !== 'verify-full' || !c.ssl_root_cert) return undefined;
  return {
    ca: c.ssl_root_cert,
    rejectUnauthorized: true,
    // SNI takes names only; an IP host is checked against the certificate's IP entries.
    ...(isIP(c.db_host) ? {} : { servername: c.db_host }),
  };
}

/** Connects and runs SELECT 1; false on any failure (refused login, no such database, …). */
export async function canLogin(c: TenantCredentials): Promise<boolean> {
  const client = new pg.Client({
    host: c.db_host,
    port: c.db_port,
    database: c.db_name,
    user: c.db_user,
    password: c.db_password,
    ssl: tenantSsl(c),
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

// The local driver serving TLS with a certificate from the fleet CA code: a tenant role logs in
// with sslmode=verify-full and is refused without TLS; the admin role keeps its plain login.
import { chmod, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCertificateAuthority, issueServerCertificate } from '@tenantdb/secrets';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalProvisioner, type LocalProvisioner } from './local';
import { waitUntilReady } from './ready';

const adminUser = 'tenantdb_admin';
const password = 'admin-password-0123456789abcdefghijklmnop';
const tenantPassword = 'tenant-password-0123456789abcdefghijklmn';

let root: string;
let local: LocalProvisioner;
let caPem: string;
let port: number;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tenantdb-local-tls-'));
  await chmod(root, 0o755);
  local = createLocalProvisioner({ root });
  const ca = await createCertificateAuthority();
  caPem = ca.certPem;
  const cert = await issueServerCertificate(ca, { hosts: local.tlsHosts('tls-a'), commonName: 'tls-a' });
  const server = await local.create({
    serverId: 'id-tls-a',
    name: 'tls-a',
    serverType: 'shared',
    adminUser,
    adminPassword: password,
    maxInstances: 5,
    cpuLimit: null,
    memoryLimitMb: null,
    storageSizeGb: null,
    settings: { fsync: 'off' },
    tls: cert,
  });
  port = server.port;
  await waitUntilReady({ host: server.host, port, user: adminUser, password }, { timeoutMs: 30_000 });
  const admin = new pg.Client({ host: '127.0.0.1', port, user: adminUser, password, database: 'postgres' });
  await admin.connect();
  await admin.query(`CREATE ROLE tenant_a LOGIN PASSWORD '${tenantPassword}'`);
  await admin.end();
});

afterAll(async () => {
  await local?.remove('tls-a').catch((err) => console.error('remove tls-a:', err));
  await rm(root, { recursive: true, force: true });
});

async function login(config: pg.ClientConfig): Promise<string> {
  const client = new pg.Client({ host: '127.0.0.1', port, database: 'postgres', ...config });
  await client.connect();
  try {
    const { rows } = await client.query<{ ssl: boolean }>(
      'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    return rows[0]?.ssl ? 'tls' : 'plain';
  } finally {
    await client.end();
  }
}

describe('local provisioner with TLS', () => {
  it('names the addresses it is reached at for the certificate', () => {
    expect(local.tlsHosts('tls-a')).toEqual(expect.arrayContaining(['127.0.0.1', 'localhost']));
  });

  it('a tenant logs in with verify-full against the fleet CA, for the IP and for localhost', async () => {
    const ssl = { ca: caPem, rejectUnauthorized: true };
    expect(await login({ user: 'tenant_a', password: tenantPassword, ssl })).toBe('tls');
    expect(
      await login({ user: 'tenant_a', password: tenantPassword, ssl: { ...ssl, servername: 'localhost' } }),
    ).toBe('tls');
  });

  it('refuses a tenant login without TLS, and one that does not trust the fleet CA', async () => {
    await expect(login({ user: 'tenant_a', password: tenantPassword, ssl: false })).rejects.toThrow(
      /no pg_hba.conf entry.*no encryption/,
    );
    const other = await createCertificateAuthority();
    await expect(
      login({
        user: 'tenant_a',
        password: tenantPassword,
        ssl: { ca: other.certPem, rejectUnauthorized: true },
      }),
    ).rejects.toThrow(/certificate/);
  });

  it('keeps the admin role able to log in with or without TLS', async () => {
    expect(await login({ user: adminUser, password, ssl: false })).toBe('plain');
    expect(await login({ user: adminUser, password, ssl: { ca: caPem, rejectUnauthorized: true } })).toBe(
      'tls',
    );
  });

  it('writes the key readable by its owner only', async () => {
    const key = await stat(join(root, 'tls-a', 'data', 'server.key'));
    expect(key.mode & 0o777).toBe(0o600);
  });
});

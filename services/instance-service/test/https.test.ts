// instance-service reaches database-service over HTTPS: database-service serves the certificate
// of TENANTDB_HTTPS_CERT_FILE / _KEY_FILE, and instance-service verifies it against
// TENANTDB_DATABASE_SERVICE_CA_FILE (a private CA); a client without that CA, or with another
// one, gets no answer. A signup completes over it. Real database-service, real pool server.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDatabaseServiceClient, DatabaseServiceUnreachableError } from '@tenantdb/contracts';
import { createCertificateAuthority, issueServerCertificate } from '@tenantdb/secrets';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchTrusting } from '../src/context';
import { type Harness, newInstance, startHarness } from './harness';

let h: Harness;
let dir: string;
let caPem: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tenantdb-https-'));
  const ca = await createCertificateAuthority();
  caPem = ca.certPem;
  const cert = await issueServerCertificate(ca, { hosts: ['127.0.0.1'], commonName: 'database-service' });
  const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
  writeFileSync(files.ca, ca.certPem);
  writeFileSync(files.cert, cert.certPem);
  writeFileSync(files.key, cert.keyPem, { mode: 0o600 });
  h = await startHarness({
    databaseServiceEnv: { TENANTDB_HTTPS_CERT_FILE: files.cert, TENANTDB_HTTPS_KEY_FILE: files.key },
    env: { TENANTDB_DATABASE_SERVICE_CA_FILE: files.ca },
  });
  h.remember(cert.keyPem.split('\n')[1]!); // a line of the key's body must never be logged
}, 60_000);
afterAll(async () => {
  await h?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('instance-service → database-service over HTTPS', () => {
  it('database-service serves HTTPS; a client trusting the CA gets answers, others get none', async () => {
    expect(h.databaseServiceUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const client = (fetch?: typeof globalThis.fetch) =>
      createDatabaseServiceClient({
        baseUrl: h.databaseServiceUrl,
        token: h.allocateToken,
        retries: 0,
        timeoutMs: 5_000,
        ...(fetch ? { fetch } : {}),
      });
    const { plans } = await client(fetchTrusting(caPem)).listPlans();
    expect(plans.map((p) => p.plan_tier)).toContain('standard');

    // The system's CAs do not know it, and neither does another private CA.
    await expect(client().listPlans()).rejects.toThrow(DatabaseServiceUnreachableError);
    const stranger = (await createCertificateAuthority()).certPem;
    await expect(client(fetchTrusting(stranger)).listPlans()).rejects.toThrow(
      DatabaseServiceUnreachableError,
    );
    // Plain HTTP to the HTTPS port is no answer either.
    const plain = createDatabaseServiceClient({
      baseUrl: h.databaseServiceUrl.replace('https:', 'http:'),
      token: h.allocateToken,
      retries: 0,
      timeoutMs: 5_000,
    });
    await expect(plain.listPlans()).rejects.toThrow(DatabaseServiceUnreachableError);
  });

  it('a signup completes over it (the configured CA file)', { timeout: 60_000 }, async () => {
    const body = newInstance();
    const created = await h.api('POST', '/api/v1/instances', { body });
    expect(created.status).toBe(202);
    const ready = await h.waitForStatus(created.body.id, body.customer_id, ['ready', 'failed'], 45_000);
    expect(ready.status).toBe('ready');
    expect(ready.db_host).toBe('127.0.0.1');
  });
});

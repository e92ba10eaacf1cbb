// Every server the workers provision serves TLS with a certificate from the fleet CA: a tenant
// connects with sslmode=verify-full using nothing but allocate's answer, a tenant login without
// TLS is refused, and the keys stay ciphertext in the catalog and out of the logs. Real local
// servers, real Redis.
import { isIP } from 'node:net';
import { createTlsRepo } from '@tenantdb/catalog';
import { type AdminTls, createPoolConnections } from '@tenantdb/pool-server';
import { createCertificateAuthority } from '@tenantdb/secrets';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { createServerCertificates } from '../src/tls/server-certificates';
import { activePool, asAdmin, type Fleet, newIds, startFleet, waitFor } from './harness';

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
});

/** A tenant's connection built from allocate's answer alone, as a client following it would. */
function clientFromAnswer(a: Record<string, unknown>, ssl: pg.ClientConfig['ssl']): pg.Client {
  const client = new pg.Client({
    host: a.db_host as string,
    port: a.db_port as number,
    database: a.db_name as string,
    user: a.db_user as string,
    password: a.db_password as string,
    ssl,
    connectionTimeoutMillis: 10_000,
  });
  client.on('error', () => {});
  return client;
}

describe('TLS on provisioned servers', () => {
  it('allocate answers sslmode verify-full and the CA; the tenant connects verified, and not without TLS', {
    timeout: 120_000,
  }, async () => {
    fleet = await startFleet({ replicas: 1 });
    const f = fleet;
    const ids = newIds();
    const { body: answer } = await f.allocateUntilReady(ids, 90_000);
    expect(answer.sslmode).toBe('verify-full');
    expect(answer.ssl_root_cert).toMatch(/^-----BEGIN CERTIFICATE-----/);

    const host = answer.db_host as string;
    const verified = clientFromAnswer(answer, {
      ca: answer.ssl_root_cert,
      rejectUnauthorized: true,
      ...(isIP(host) ? {} : { servername: host }),
    });
    await verified.connect();
    // Sessions start as the tenant's owner role; pg_stat_ssl shows a session's details to the
    // role that logged in (docs/security.md, quotas): look as that role.
    await verified.query('SET ROLE NONE');
    const { rows } = await verified.query<{ ssl: boolean; version: string }>(
      'SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    await verified.end();
    expect(rows[0]).toMatchObject({ ssl: true, version: expect.stringMatching(/^TLSv1\.[23]$/) });

    const plain = clientFromAnswer(answer, false);
    await expect(plain.connect()).rejects.toThrow(/no pg_hba.conf entry.*no encryption/);
    await plain.end().catch(() => {});

    // The same CA is served at GET /api/database/ca.pem, and the read answers it again.
    const ca = await f.app.inject({
      method: 'GET',
      url: '/api/database/ca.pem',
      headers: { authorization: `Bearer ${f.allocateToken}` },
    });
    expect(ca.statusCode).toBe(200);
    expect(ca.headers['content-type']).toMatch(/application\/x-pem-file/);
    expect(ca.body).toBe(answer.ssl_root_cert);
    const read = await f.api('GET', `/api/database/allocations/${ids.instance_id}/credentials`);
    expect(read.body).toMatchObject({ sslmode: 'verify-full', ssl_root_cert: answer.ssl_root_cert });

    // Keys are SecretBox ciphertext in the catalog, and no key reached a log line.
    const tls = createTlsRepo(f.db);
    const cert = await tls.serverCertificate(answer.db_server_id as string);
    const active = await tls.activeCa();
    expect(cert?.ca_id).toBe(active?.id);
    expect(cert?.hosts).toEqual(expect.arrayContaining([host]));
    for (const [enc, rowId] of [
      [cert!.key_enc, cert!.db_server_id],
      [active!.key_enc, active!.id],
    ] as const) {
      expect(enc).toMatch(/^v2\./);
      expect(enc).not.toContain('PRIVATE KEY');
      const key = f.secrets.decrypt(enc, rowId);
      expect(key).toContain('BEGIN PRIVATE KEY');
      f.seenSecrets.add(key.split('\n')[1]!); // a line of the key's body: checked against the logs at close
    }
  });

  it('admin connections are TLS verified with the fleet CA (TENANTDB_POOL_ADMIN_TLS), refused by a CA that did not sign', {
    timeout: 120_000,
  }, async () => {
    fleet = await startFleet({ replicas: 1 });
    const f = fleet;
    const pool = await activePool(f);
    const fleetCa = (await createTlsRepo(f.db).serverTrust(pool.id))?.ca_pem;
    expect(fleetCa).toMatch(/^-----BEGIN CERTIFICATE-----/);

    // The running services (default prefer): every tenantdb admin session on the server is TLS
    // (an allocation leaves database-service's pooled admin connection open for a while).
    await f.allocateUntilReady(newIds(), 90_000);
    await waitFor(
      async () => {
        const [seen] = await asAdmin<{ n: number }>(
          f,
          pool,
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'tenantdb'",
        );
        return seen!.n > 0;
      },
      30_000,
      'an admin session of the services',
    );
    const sessions = await asAdmin<{ ssl: boolean }>(
      f,
      pool,
      `SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
        WHERE a.application_name = 'tenantdb'`,
    );
    expect(sessions.map((r) => r.ssl)).toEqual(sessions.map(() => true));

    const sslOfSession = async (tls: AdminTls) => {
      const connections = createPoolConnections(f.secrets, { tls, connectTimeoutMs: 10_000 });
      try {
        return await connections.withOwnClient(pool, async (c) => {
          const { rows } = await c.query<{ ssl: boolean }>(
            'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
          );
          return rows[0]!.ssl;
        });
      } finally {
        await connections.close();
      }
    };
    const withCa = (ca: string | undefined) => async () => ca;
    expect(await sslOfSession({ mode: 'prefer', caOf: withCa(fleetCa) })).toBe(true);
    expect(await sslOfSession({ mode: 'off', caOf: withCa(fleetCa) })).toBe(false);
    // No fleet certificate known (an external server): plain under prefer, encrypted under require.
    expect(await sslOfSession({ mode: 'prefer', caOf: withCa(undefined) })).toBe(false);
    expect(await sslOfSession({ mode: 'require', caOf: withCa(undefined) })).toBe(true);
    // A CA that did not sign the server's certificate: the connection is refused, not downgraded.
    const stranger = (await createCertificateAuthority()).certPem;
    await expect(sslOfSession({ mode: 'prefer', caOf: withCa(stranger) })).rejects.toThrow(
      /unavailable: .*(self.signed|unable to verify|certificate)/i,
    );
  });

  it('racing creators of the fleet CA all get the same one, and a server keeps its first certificate', {
    timeout: 60_000,
  }, async () => {
    fleet = await startFleet({ replicas: 0 });
    const f = fleet;
    const tls = createTlsRepo(f.db);
    const replicas = Array.from({ length: 4 }, () =>
      createServerCertificates({ tls, secrets: f.secrets }, { validityDays: 30 }),
    );
    const cas = await Promise.all(replicas.map((r) => r.fleetCa()));
    expect(new Set(cas.map((c) => c.id)).size).toBe(1);
    expect(await f.db.selectFrom('fleet_ca').select('id').execute()).toHaveLength(1);

    const { id } = await f.db
      .insertInto('db_servers')
      .values({
        name: 'tls-race',
        driver: 'local',
        server_type: 'shared',
        max_instances: 1,
        status: 'provisioning',
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const issued = await Promise.all(replicas.map((r) => r.forServer({ id, name: 'tls-race' }, f.local)));
    expect(new Set(issued.map((i) => i!.certPem)).size).toBe(1);
    const again = await replicas[0]!.forServer({ id, name: 'tls-race' }, f.local);
    expect(again?.certPem).toBe(issued[0]!.certPem);

    // Retiring the CA: the next need makes a new one; the server keeps its certificate, and
    // what clients verify it with stays the CA that signed it.
    const oldCa = cas[0]!;
    await f.db.updateTable('fleet_ca').set({ retired_at: new Date() }).where('id', '=', oldCa.id).execute();
    const newCa = await replicas[1]!.fleetCa();
    expect(newCa.id).not.toBe(oldCa.id);
    expect((await tls.serverTrust(id))?.ca_pem).toBe(oldCa.cert_pem);
    expect((await replicas[2]!.forServer({ id, name: 'tls-race' }, f.local))?.certPem).toBe(
      issued[0]!.certPem,
    );
  });
});

describe('a server certificate about to expire', () => {
  it('is reported by the health check and by tenantdb_server_cert_expiry_seconds', {
    timeout: 120_000,
  }, async () => {
    // A short-lived certificate (5 days) against the default 21-day warning.
    fleet = await startFleet({ replicas: 1, env: { TENANTDB_SERVER_CERT_DAYS: '5' } });
    const f = fleet;
    const pool = await activePool(f);
    await f.queues.enqueue('health-check-server', { server_id: pool.id });
    await waitFor(
      async () => f.logs.text().includes("the server's TLS certificate expires in 4 days"),
      30_000,
      'the expiry warning',
    );
    const line = f.logs.lines.find((l) => l.includes('TLS certificate expires in 4 days'))!;
    expect(JSON.parse(line)).toMatchObject({ level: 40, db_server_id: pool.id });

    const res = await f.workers[0]!.app.inject({ method: 'GET', url: '/metrics' });
    const series = new RegExp(
      `^tenantdb_server_cert_expiry_seconds\\{[^}]*server_id="${pool.id}"[^}]*\\} (\\S+)$`,
      'm',
    );
    const seconds = Number(series.exec(res.body)?.[1]);
    expect(seconds).toBeGreaterThan(4 * 86_400);
    expect(seconds).toBeLessThanOrEqual(5 * 86_400);
  });
});

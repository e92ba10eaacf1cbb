import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { certificateNotAfter, createCertificateAuthority, issueServerCertificate } from './x509';

/** A TLS handshake against a server holding `cert`, verified by `ca` for `servername`. */
async function handshake(
  cert: { certPem: string; keyPem: string },
  ca: string,
  servername: string,
): Promise<void> {
  const server = tls.createServer({ cert: cert.certPem, key: cert.keyPem }, (s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  try {
    await new Promise<void>((resolve, reject) => {
      const socket = tls.connect(
        { host: '127.0.0.1', port, ca, servername, rejectUnauthorized: true },
        () => {
          socket.end();
          resolve();
        },
      );
      socket.on('error', reject);
    });
  } finally {
    server.close();
  }
}

describe('fleet CA and server certificates', () => {
  it('signs a server certificate for its host names and addresses, verifiable with the CA alone', async () => {
    const ca = await createCertificateAuthority();
    const server = await issueServerCertificate(ca, {
      hosts: ['127.0.0.1', 'localhost', 'pool-a.example'],
      commonName: 'pool-a',
    });
    const caCert = new X509Certificate(ca.certPem);
    const leaf = new X509Certificate(server.certPem);
    expect(caCert.ca).toBe(true);
    expect(leaf.ca).toBe(false);
    expect(leaf.checkIssued(caCert)).toBe(true);
    expect(leaf.verify(caCert.publicKey)).toBe(true);
    expect(leaf.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(leaf.checkHost('pool-a.example')).toBe('pool-a.example');
    expect(leaf.checkHost('other.example')).toBeUndefined();
    expect(server.keyPem).toContain('BEGIN PRIVATE KEY');
    expect(certificateNotAfter(server.certPem).getTime()).toBe(server.notAfter.getTime());

    await handshake(server, ca.certPem, 'localhost');
    await handshake(server, ca.certPem, 'pool-a.example');
    await expect(handshake(server, ca.certPem, 'other.example')).rejects.toThrow(/altnames|Hostname/i);
    const otherCa = await createCertificateAuthority();
    await expect(handshake(server, otherCa.certPem, 'localhost')).rejects.toThrow(/certificate/i);
  });

  it('never issues a certificate that outlives its CA, and refuses one without hosts', async () => {
    const ca = await createCertificateAuthority({ validityDays: 10 });
    const server = await issueServerCertificate(ca, {
      hosts: ['localhost'],
      commonName: 'x',
      validityDays: 365,
    });
    expect(server.notAfter.getTime()).toBeLessThanOrEqual(ca.notAfter.getTime());
    const short = await issueServerCertificate(ca, {
      hosts: ['localhost'],
      commonName: 'x',
      validityDays: 2,
    });
    expect(short.notAfter.getTime() - Date.now()).toBeLessThan(2 * 86_400_000 + 1000);
    await expect(issueServerCertificate(ca, { hosts: [], commonName: 'x' })).rejects.toThrow(/host/);
  });
});

// X.509 for the fleet's TLS: the fleet CA tenantdb creates for itself, and the server certificates
// it signs for the Postgres servers the drivers create. ECDSA P-256 with SHA-256 throughout, built
// with @peculiar/x509 on Node's WebCrypto. Keys leave here as PKCS#8 PEM (what Postgres reads);
// callers encrypt them with a SecretBox before they are stored.
// @peculiar/x509 needs a Reflect polyfill loaded before it (its README).
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';

/** Node's WebCrypto, typed as the library's parameter (the tsconfig has no DOM lib). */
const crypto = webcrypto as unknown as NonNullable<
  Parameters<typeof x509.X509CertificateGenerator.create>[1]
>;
const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** Backdated so that a client whose clock is a little behind still accepts a fresh certificate. */
const CLOCK_SKEW_MS = 5 * 60_000;

export interface CertificateMaterial {
  certPem: string;
  /** PKCS#8 PEM; secret. */
  keyPem: string;
  notAfter: Date;
}

export interface CaOptions {
  commonName?: string;
  validityDays?: number;
  now?: Date;
}

/** A self-signed CA that may sign server certificates only (path length 0). */
export async function createCertificateAuthority(opts: CaOptions = {}): Promise<CertificateMaterial> {
  const now = opts.now ?? new Date();
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const notAfter = new Date(now.getTime() + (opts.validityDays ?? 3650) * DAY_MS);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name: [{ CN: [opts.commonName ?? 'tenantdb fleet CA'] }, { O: ['tenantdb'] }],
      notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
      notAfter,
      signingAlgorithm: ALGORITHM,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return { certPem: cert.toString('pem'), keyPem: await exportKey(keys.privateKey), notAfter: cert.notAfter };
}

export interface ServerCertificateOptions {
  /** Host names and IP addresses the server is reached at: its subjectAltNames (at least one). */
  hosts: readonly string[];
  /** The subject's common name (informational: clients check the SANs). */
  commonName: string;
  validityDays?: number;
  now?: Date;
}

/** A TLS server certificate for `hosts`, signed by the CA. */
export async function issueServerCertificate(
  ca: { certPem: string; keyPem: string },
  opts: ServerCertificateOptions,
): Promise<CertificateMaterial> {
  const hosts = [...new Set(opts.hosts.map((h) => h.replace(/^\[|\]$/g, '')))].filter(Boolean);
  if (hosts.length === 0) throw new Error('a server certificate needs at least one host name or address');
  const now = opts.now ?? new Date();
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await crypto.subtle.importKey('pkcs8', pemBody(ca.keyPem), ALGORITHM, false, ['sign']);
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const requested = new Date(now.getTime() + (opts.validityDays ?? 365) * DAY_MS);
  // A certificate never outlives the CA that signed it.
  const notAfter = requested < caCert.notAfter ? requested : caCert.notAfter;
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: [{ CN: [opts.commonName] }, { O: ['tenantdb'] }],
      issuer: caCert.subject,
      notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
      notAfter,
      signingAlgorithm: ALGORITHM,
      publicKey: keys.publicKey,
      signingKey: caKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension(
          hosts.map((value) => ({ type: isIP(value) ? ('ip' as const) : ('dns' as const), value })),
          false,
        ),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
        await x509.AuthorityKeyIdentifierExtension.create(caCert, false, crypto),
      ],
    },
    crypto,
  );
  return { certPem: cert.toString('pem'), keyPem: await exportKey(keys.privateKey), notAfter: cert.notAfter };
}

/** The notAfter of a PEM certificate. */
export function certificateNotAfter(certPem: string): Date {
  return new x509.X509Certificate(certPem).notAfter;
}

async function exportKey(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey('pkcs8', key));
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN PRIVATE KEY-----\n${lines.join('\n')}\n-----END PRIVATE KEY-----\n`;
}

function pemBody(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----(BEGIN|END) [A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

/** 16 random bytes, the top bit cleared so the DER integer stays positive. */
function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return Buffer.from(bytes).toString('hex');
}

// The certificates of the servers tenantdb creates: the fleet CA is made on first need and kept in
// the catalog (key encrypted with the SecretBox, like admin passwords); each server gets one
// certificate, for the host names and addresses its driver says it is reached at, issued once and
// kept, so a retried provision serves the same certificate as the first attempt.
import { randomUUID } from 'node:crypto';
import type { DbServer, TlsRepo } from '@tenantdb/catalog';
import type { Provisioner, ServerTls } from '@tenantdb/provisioners';
import { createCertificateAuthority, issueServerCertificate, type SecretBox } from '@tenantdb/secrets';

export interface ServerCertificatesOptions {
  /** Validity of a new server certificate, in days. */
  validityDays: number;
}

export type ServerCertificates = ReturnType<typeof createServerCertificates>;

export function createServerCertificates(
  deps: { tls: TlsRepo; secrets: Pick<SecretBox, 'encrypt' | 'decrypt'> },
  opts: ServerCertificatesOptions,
) {
  const { tls, secrets } = deps;

  /** The active fleet CA, created if there is none: racing creators all get the first one's. */
  async function fleetCa() {
    const active = await tls.activeCa();
    if (active) return active;
    const made = await createCertificateAuthority();
    const id = randomUUID(); // chosen here: the key is encrypted for its row
    return tls.insertCaUnlessActive({
      id,
      cert_pem: made.certPem,
      key_enc: secrets.encrypt(made.keyPem, id),
      not_after: made.notAfter,
    });
  }

  return {
    fleetCa,

    /**
     * The server's certificate and key, issued now (by the active CA) if it has none; undefined
     * when its driver serves no fleet-CA TLS (names no host for it: CloudNativePG mode).
     */
    async forServer(
      server: Pick<DbServer, 'id' | 'name'>,
      driver: Provisioner,
    ): Promise<ServerTls | undefined> {
      let stored = await tls.serverCertificate(server.id);
      if (!stored) {
        const hosts = driver.tlsHosts(server.name);
        if (hosts.length === 0) return undefined;
        const ca = await fleetCa();
        const issued = await issueServerCertificate(
          { certPem: ca.cert_pem, keyPem: secrets.decrypt(ca.key_enc, ca.id) },
          { hosts, commonName: server.name, validityDays: opts.validityDays },
        );
        stored = await tls.insertServerCertificateUnlessPresent({
          db_server_id: server.id,
          ca_id: ca.id,
          cert_pem: issued.certPem,
          key_enc: secrets.encrypt(issued.keyPem, server.id),
          hosts,
          not_after: issued.notAfter,
        });
      }
      return { certPem: stored.cert_pem, keyPem: secrets.decrypt(stored.key_enc, stored.db_server_id) };
    },
  };
}

// The fleet's TLS material in the catalog: the active fleet CA and each server's certificate.
// Keys are stored as SecretBox ciphertext (the caller encrypts and decrypts); nothing here sees
// a plaintext key.
import type { CatalogDb, Executor } from '../db';
import type { FleetCa, ServerCertificate } from '../types';

export type TlsRepo = ReturnType<typeof createTlsRepo>;

export interface NewFleetCa {
  /** Chosen by the caller: the key is encrypted for its row (SecretBox associated data). */
  id: string;
  cert_pem: string;
  key_enc: string;
  not_after: Date;
}

export interface NewServerCertificate {
  db_server_id: string;
  ca_id: string;
  cert_pem: string;
  key_enc: string;
  hosts: string[];
  not_after: Date;
}

export function createTlsRepo(db: CatalogDb) {
  /** The CA in use (the one not retired); undefined before the first is created. */
  const activeCa = (trx: Executor = db): Promise<FleetCa | undefined> =>
    trx.selectFrom('fleet_ca').selectAll().where('retired_at', 'is', null).executeTakeFirst();
  const serverCertificate = (serverId: string, trx: Executor = db): Promise<ServerCertificate | undefined> =>
    trx.selectFrom('server_certificates').selectAll().where('db_server_id', '=', serverId).executeTakeFirst();

  return {
    activeCa,
    serverCertificate,

    /**
     * Inserts `ca` unless a CA is active already (the unique index fleet_ca_one_active), then
     * reads the active one: racing creators all end up with the same CA, the first one's.
     */
    async insertCaUnlessActive(ca: NewFleetCa, trx: Executor = db): Promise<FleetCa> {
      await trx
        .insertInto('fleet_ca')
        .values(ca)
        .onConflict((oc) => oc.doNothing())
        .execute();
      const active = await activeCa(trx);
      if (!active) throw new Error('no active fleet CA after inserting one');
      return active;
    },

    /**
     * Records a server's certificate unless it has one, and returns the one it has: a retried
     * provision (or two racing ones) serves the certificate the first attempt stored.
     */
    async insertServerCertificateUnlessPresent(
      cert: NewServerCertificate,
      trx: Executor = db,
    ): Promise<ServerCertificate> {
      await trx
        .insertInto('server_certificates')
        .values(cert)
        .onConflict((oc) => oc.column('db_server_id').doNothing())
        .execute();
      const stored = await serverCertificate(cert.db_server_id, trx);
      if (!stored) throw new Error(`no certificate for server ${cert.db_server_id} after inserting one`);
      return stored;
    },

    /**
     * When each server's certificate expires, for servers that still exist (not decommissioned):
     * what tenantdb_server_cert_expiry_seconds reports on each scrape.
     */
    certificateExpiries(trx: Executor = db): Promise<{ db_server_id: string; not_after: Date }[]> {
      return trx
        .selectFrom('server_certificates as sc')
        .innerJoin('db_servers as s', 's.id', 'sc.db_server_id')
        .select(['sc.db_server_id', 'sc.not_after'])
        .where('s.status', '<>', 'decommissioned')
        .execute();
    },

    /**
     * The CA certificate that signed a server's certificate (what a client verifies the server
     * with) and when that certificate expires; undefined for a server without one (created before
     * TLS, or registered from outside).
     */
    serverTrust(
      serverId: string,
      trx: Executor = db,
    ): Promise<{ ca_pem: string; not_after: Date } | undefined> {
      return trx
        .selectFrom('server_certificates as sc')
        .innerJoin('fleet_ca as ca', 'ca.id', 'sc.ca_id')
        .select(['ca.cert_pem as ca_pem', 'sc.not_after'])
        .where('sc.db_server_id', '=', serverId)
        .executeTakeFirst();
    },
  };
}

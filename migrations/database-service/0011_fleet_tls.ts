// TLS for the servers tenantdb creates: the fleet CA it keeps (one active at a time) and the
// certificate it issued each server. Private keys are ciphertext only (see @tenantdb/secrets), as
// admin passwords are; the CHECKs refuse anything that is not.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE fleet_ca (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      cert_pem text NOT NULL CHECK (cert_pem LIKE '-----BEGIN CERTIFICATE-----%'),
      key_enc text NOT NULL CHECK (key_enc LIKE 'v1.%'),
      not_after timestamptz NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      retired_at timestamptz
    )
  `.execute(db);
  // One active CA: the first creator's INSERT wins, every other one conflicts and re-reads it.
  await sql`CREATE UNIQUE INDEX fleet_ca_one_active ON fleet_ca ((true)) WHERE retired_at IS NULL`.execute(
    db,
  );
  await sql`
    CREATE TABLE server_certificates (
      db_server_id uuid PRIMARY KEY REFERENCES db_servers (id) ON DELETE CASCADE,
      ca_id uuid NOT NULL REFERENCES fleet_ca (id),
      cert_pem text NOT NULL CHECK (cert_pem LIKE '-----BEGIN CERTIFICATE-----%'),
      key_enc text NOT NULL CHECK (key_enc LIKE 'v1.%'),
      hosts text[] NOT NULL,
      not_after timestamptz NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    )
  `.execute(db);
  await sql`CREATE INDEX server_certificates_ca ON server_certificates (ca_id)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE server_certificates`.execute(db);
  await sql`DROP TABLE fleet_ca`.execute(db);
}

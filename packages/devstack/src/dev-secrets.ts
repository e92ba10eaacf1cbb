// The dev stack's secrets (catalog password, encryption key, API tokens), generated once per state
// dir and kept there.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generatePassword } from '@tenantdb/secrets';

export interface StackSecrets {
  catalogPassword: string;
  encryptionKey: string;
  adminToken: string;
  allocateToken: string;
  portalToken: string;
  callbackSecret: string;
}

/** Generated once per state dir and kept (0600) so the persistent state keeps working across runs. */
export function loadSecrets(stateDir: string): StackSecrets {
  const file = join(stateDir, 'dev-secrets.json');
  const saved = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Partial<StackSecrets>) : {};
  const secrets: StackSecrets = {
    catalogPassword: saved.catalogPassword ?? generatePassword(),
    encryptionKey: saved.encryptionKey ?? randomBytes(32).toString('base64'),
    adminToken: saved.adminToken ?? `tdb_admin_${randomBytes(24).toString('hex')}`,
    allocateToken: saved.allocateToken ?? `tdb_alloc_${randomBytes(24).toString('hex')}`,
    portalToken: saved.portalToken ?? `tdb_portal_${randomBytes(24).toString('hex')}`,
    callbackSecret: saved.callbackSecret ?? `tdb_cb_${randomBytes(24).toString('hex')}`,
  };
  if (Object.keys(saved).length !== Object.keys(secrets).length)
    writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  return secrets;
}

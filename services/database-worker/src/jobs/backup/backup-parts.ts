// What backup-tenant and restore-tenant share: the configured store (a job asked of a worker with
// none fails permanently, saying so), and the tools and login for a server.
import type { BackupStore } from '@tenantdb/backups';
import type { DbServer } from '@tenantdb/catalog';
import { PermanentJobError } from '@tenantdb/jobs';
import type { WorkerDeps } from '../../context';
import { dumpConnection, toolsFor } from '../server-tools';

export function requireStore(deps: Pick<WorkerDeps, 'backupStore'>): BackupStore {
  if (!deps.backupStore)
    throw new PermanentJobError('no backup store is configured on this worker (TENANTDB_BACKUP_STORE=none)');
  return deps.backupStore;
}

export async function backupToolsFor(
  deps: Pick<WorkerDeps, 'connections' | 'secrets' | 'clientTools'>,
  server: DbServer,
  dbname: string,
) {
  const { tools, serverVersion } = await toolsFor(deps, server);
  return { tools, serverVersion, conn: dumpConnection(deps, server, dbname) };
}

// The client tools (pg_dump, pg_restore, psql) that fit one server, and the connection they use:
// shared by moves, backups and restores. No fitting tools is a permanent failure with the reason
// chooseTools gives (what was found, what to install).
import type { DbServer } from '@tenantdb/catalog';
import { PermanentJobError } from '@tenantdb/jobs';
import { type ClientTools, chooseTools, type DumpConnection, inspectServer } from '@tenantdb/pool-server';
import type { WorkerDeps } from '../context';

type ToolDeps = Pick<WorkerDeps, 'connections' | 'secrets' | 'clientTools'>;

export async function toolsFor(
  deps: ToolDeps,
  server: DbServer,
): Promise<{ tools: ClientTools; serverVersion: string }> {
  const facts = await inspectServer(deps.connections, server);
  const choice = chooseTools(await deps.clientTools(), facts.major);
  if (choice.kind === 'none') throw new PermanentJobError(choice.reason);
  return { tools: choice.tools, serverVersion: facts.postgresVersion };
}

/** The admin login to one database of the server, for pg_dump/pg_restore (password in PGPASSWORD). */
export function dumpConnection(
  deps: Pick<WorkerDeps, 'secrets'>,
  server: DbServer,
  dbname: string,
): DumpConnection {
  return {
    host: server.host!,
    port: server.port!,
    user: server.admin_user!,
    password: deps.secrets.decrypt(server.admin_password_enc!, server.id),
    dbname,
  };
}

// health-check-all (every 5 minutes, one schedule for all replicas) fans out one
// health-check-server job per server with an address; each is a real login + SELECT 1 + the
// count of tenant databases on the server against the catalog. Errored servers are checked too,
// so they recover.
import { checkServerHealth } from '@tenantdb/pool-server';
import type { JobContext, WorkerDeps } from '../context';

const CHECKED = ['active', 'full', 'error', 'cordoned', 'draining', 'maintenance'] as const;

export function healthCheckAll(deps: WorkerDeps) {
  const { db, queues, audit } = deps;
  return async (_payload: unknown, { log }: JobContext) => {
    const rows = await db
      .selectFrom('db_servers')
      .select('id')
      .where('status', 'in', CHECKED)
      .where('host', 'is not', null)
      .execute();
    for (const { id } of rows) await queues.enqueue('health-check-server', { server_id: id });
    // The sweep leaves a trace operators (and alerts) can see: "no sweep in 15 minutes".
    await audit.record({
      actor: 'database-worker',
      action: 'fleet.health_sweep',
      details: { servers: rows.length },
    });
    log.info({ servers: rows.length }, 'health sweep queued');
    return { servers: rows.length };
  };
}

export function healthCheckServer(deps: WorkerDeps) {
  const { db, servers, connections } = deps;
  return async ({ server_id }: { server_id: string }, { log }: JobContext) => {
    const server = await servers.findById(server_id);
    if (
      !server?.host ||
      !server.admin_password_enc ||
      !(CHECKED as readonly string[]).includes(server.status)
    ) {
      return 'not checkable';
    }
    const { probe, next } = await checkServerHealth(db, connections, server);
    if (next.health_status !== server.health_status || next.status !== server.status) {
      log.info(
        {
          db_server_id: server_id,
          name: server.name,
          health: next.health_status,
          status: next.status,
          error: probe.error,
        },
        'server health changed',
      );
    }
    return { ok: probe.ok, health: next.health_status, status: next.status };
  };
}

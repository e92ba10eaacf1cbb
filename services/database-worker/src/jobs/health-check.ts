// health-check-all (every 5 minutes, one schedule for all replicas) fans out one
// health-check-server job per server with an address, in bounded batches; each check is a real
// login + SELECT 1 + the count of tenant databases on the server against the catalog. Errored
// servers are checked too, so they recover.
//
// The bounds, however large the fleet and however many replicas:
// - one connection per server at a time: a check opens one connection and closes it, and its job
//   id is the server's, so a server has at most one check queued or running (a sweep that finds
//   the last one's check still waiting does not add another);
// - TENANTDB_HEALTH_CONCURRENCY checks at once in all: the monitoring queue's global concurrency
//   (kept in Redis, set again by every sweep so that a Redis that lost it gets it back).
import { CHECKABLE_STATUSES } from '@tenantdb/catalog';
import { certificateWarning, checkServerHealth } from '@tenantdb/pool-server';
import type { JobContext, WorkerDeps } from '../context';

/** Servers read from the catalog and queued per round trip. */
export const SWEEP_BATCH = 500;

/** The monitoring queue's total concurrency, across replicas (BullMQ global concurrency). */
export async function boundHealthChecks(deps: Pick<WorkerDeps, 'queues' | 'config'>): Promise<void> {
  await deps.queues.queue('monitoring').setGlobalConcurrency(deps.config.TENANTDB_HEALTH_CONCURRENCY);
}

export function healthCheckAll(deps: WorkerDeps) {
  const { fleet, queues, audit, config } = deps;
  return async (_payload: unknown, { log }: JobContext) => {
    await boundHealthChecks(deps);
    let servers = 0;
    let batches = 0;
    let after: string | undefined;
    for (;;) {
      const ids = await fleet.pageWithAddress(CHECKABLE_STATUSES, after, SWEEP_BATCH);
      if (ids.length === 0) break;
      await queues.enqueueMany(
        'health-check-server',
        ids.map((id) => ({ server_id: id })),
      );
      servers += ids.length;
      batches++;
      after = ids.at(-1);
      if (ids.length < SWEEP_BATCH) break;
    }
    // The sweep leaves a trace operators (and alerts) can see: "no sweep in 15 minutes".
    await audit.record({
      actor: 'database-worker',
      action: 'fleet.health_sweep',
      details: { servers, batches, concurrency: config.TENANTDB_HEALTH_CONCURRENCY },
    });
    log.info({ servers, batches, concurrency: config.TENANTDB_HEALTH_CONCURRENCY }, 'health sweep queued');
    return { servers, batches };
  };
}

export function healthCheckServer(deps: WorkerDeps) {
  const { servers, health, connections, tls, config } = deps;
  return async ({ server_id }: { server_id: string }, { log }: JobContext) => {
    const server = await servers.findById(server_id);
    if (
      !server?.host ||
      !server.admin_password_enc ||
      !(CHECKABLE_STATUSES as readonly string[]).includes(server.status)
    ) {
      return 'not checkable';
    }
    const { probe, next } = await checkServerHealth(health, connections, server);
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
    // The certificate tenantdb issued it (none for servers created before TLS or registered):
    // a warning in the log and the job's result before it expires (the gauge
    // tenantdb_server_cert_expiry_seconds is what alerts read).
    const trust = await tls.serverTrust(server_id);
    const warning = certificateWarning(
      trust?.not_after,
      new Date(),
      config.TENANTDB_CERT_EXPIRY_WARNING_DAYS,
    );
    if (warning) {
      log.warn(
        { db_server_id: server_id, name: server.name, cert_not_after: trust!.not_after.toISOString() },
        warning,
      );
    }
    return {
      ok: probe.ok,
      health: next.health_status,
      status: next.status,
      ...(trust ? { cert_not_after: trust.not_after.toISOString() } : {}),
      ...(warning ? { warning } : {}),
    };
  };
}

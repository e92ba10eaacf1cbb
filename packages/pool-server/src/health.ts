// The health check of one pool server — a real login, SELECT 1, and the count of tenant
// databases on it — and the pure rule that turns results into health and status.
import type { CatalogDb, DbServer, HealthStatus, ServerStatus } from '@tenantdb/catalog';
import { describePgError, type PoolConnections, type PoolServerTarget } from './connections';
import { TENANT_PREFIX } from './tenant.sql';

export interface HealthProbe {
  ok: boolean;
  latencyMs: number | null;
  postgresVersion: string | null;
  tenantDatabases: number | null;
  error: string | null;
}

export async function probeServer(
  connections: PoolConnections,
  server: PoolServerTarget,
  timeoutMs = 10_000,
): Promise<HealthProbe> {
  const started = performance.now();
  try {
    return await connections.withOwnClient(server, async (client) => {
      await client.query(`SET statement_timeout = ${Math.trunc(timeoutMs)}`);
      await client.query('SELECT 1');
      const { rows } = await client.query<{ version: string; n: number }>(
        `SELECT current_setting('server_version') AS version,
                (SELECT count(*)::int FROM pg_database WHERE starts_with(datname, $1)) AS n`,
        [TENANT_PREFIX],
      );
      return {
        ok: true,
        latencyMs: Math.round(performance.now() - started),
        postgresVersion: rows[0]!.version,
        tenantDatabases: rows[0]!.n,
        error: null,
      };
    });
  } catch (err) {
    return {
      ok: false,
      latencyMs: null,
      postgresVersion: null,
      tenantDatabases: null,
      error:
        err instanceof Error && err.name === 'PoolServerUnavailableError'
          ? err.message
          : describePgError(err),
    };
  }
}

/** Consecutive failures that make a server unhealthy and take it out of placement. */
export const UNHEALTHY_AFTER = 3;
const HEALTH_REASON = 'health check failed';

export interface HealthState {
  status: ServerStatus;
  status_reason: string | null;
  health_status: HealthStatus;
  health_failures: number;
  current_instances: number;
  max_instances: number;
}

/**
 * 1–2 failures: degraded; 3: unhealthy, and an active/full server goes to error. A server that
 * errored because of health checks recovers on its first good check.
 */
export function nextHealthState(
  current: HealthState,
  probe: Pick<HealthProbe, 'ok' | 'error'>,
): Pick<HealthState, 'status' | 'status_reason' | 'health_status' | 'health_failures'> {
  if (probe.ok) {
    const recovering = current.status === 'error' && current.status_reason?.startsWith(HEALTH_REASON);
    return {
      health_status: 'healthy',
      health_failures: 0,
      status: recovering
        ? current.current_instances >= current.max_instances
          ? 'full'
          : 'active'
        : current.status,
      status_reason: recovering ? null : current.status_reason,
    };
  }
  const failures = current.health_failures + 1;
  if (failures < UNHEALTHY_AFTER) {
    return {
      health_status: 'degraded',
      health_failures: failures,
      status: current.status,
      status_reason: current.status_reason,
    };
  }
  const takeOut = current.status === 'active' || current.status === 'full';
  return {
    health_status: 'unhealthy',
    health_failures: failures,
    status: takeOut ? 'error' : current.status,
    status_reason: takeOut
      ? `${HEALTH_REASON} ${failures} times: ${probe.error ?? 'unknown error'}`
      : current.status_reason,
  };
}

/** Catalog rows that stand for a database on the server (warm ones included). */
export const ROWS_ON_SERVER = ['warm', 'creating', 'ready', 'releasing'] as const;

export interface HealthCheckOutcome {
  probe: HealthProbe;
  next: ReturnType<typeof nextHealthState>;
  checkedAt: Date;
  databasesInCatalog: number;
  /** Tenant databases on the server minus catalog rows for them; null when the server was not reached. */
  drift: number | null;
  /** The row after the check; undefined when its status changed meanwhile (nothing was written). */
  updated: DbServer | undefined;
}

/**
 * One health check, end to end: probe, apply the transition rule, record it. The update only
 * lands if nobody changed the server's status meanwhile (an operator cordoning it, say).
 */
export async function checkServerHealth(
  db: CatalogDb,
  connections: PoolConnections,
  server: DbServer,
): Promise<HealthCheckOutcome> {
  const probe = await probeServer(connections, server);
  const next = nextHealthState(server, probe);
  const checkedAt = new Date();
  // Counted after the probe: a row is written before its database is made, so a database the
  // probe saw always has its row by now (a drift > 0 is real, not a race with allocation).
  const counted = await db
    .selectFrom('tenant_databases')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('db_server_id', '=', server.id)
    .where('status', 'in', ROWS_ON_SERVER)
    .executeTakeFirstOrThrow();
  const databasesInCatalog = Number(counted.n);
  const drift = probe.tenantDatabases === null ? null : probe.tenantDatabases - databasesInCatalog;
  const updated = await db
    .updateTable('db_servers')
    .set({
      ...next,
      last_health_check: checkedAt,
      last_health_latency_ms: probe.latencyMs,
      ...(probe.postgresVersion ? { postgres_version: probe.postgresVersion } : {}),
      ...(drift !== null ? { database_drift: drift } : {}),
      updated_at: checkedAt,
    })
    .where('id', '=', server.id)
    .where('status', '=', server.status)
    .returningAll()
    .executeTakeFirst();
  return { probe, next, checkedAt, databasesInCatalog, drift, updated };
}

// The health check of one pool server — a real login, SELECT 1, and the count of tenant
// databases on it — and the pure rule that turns results into health and status. The catalog is
// reached through a HealthRecorder (the catalog's ServersRepo is one), so this package needs none.
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

/** A server's health as the catalog records it (its HEALTH_STATUSES). */
export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy' | 'unknown';
/** The statuses the transition rule sets; any other it finds it keeps. */
export type HealthSetStatus = 'active' | 'full' | 'error';

/** What the rule reads of a server; `S` is the catalog's status type (any string here). */
export interface HealthState<S extends string = string> {
  status: S;
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
export function nextHealthState<S extends string>(
  current: HealthState<S>,
  probe: Pick<HealthProbe, 'ok' | 'error'>,
): NextHealthState<S> {
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

/** What one check decides: the server's health, and its status (changed only as the rule says). */
export interface NextHealthState<S extends string = string> {
  status: S | HealthSetStatus;
  status_reason: string | null;
  health_status: HealthStatus;
  health_failures: number;
}

/** What a check writes on the server's row. */
export interface HealthRecord<S extends string = string> extends NextHealthState<S> {
  last_health_check: Date;
  last_health_latency_ms: number | null;
  /** Only when the server was reached. */
  postgres_version?: string;
  /** Tenant databases on the server minus catalog rows for them; only when the server was reached. */
  database_drift?: number;
}

/**
 * The catalog side of a check, as narrow as it uses (the catalog's HealthRepo is one; `R` is
 * its server row).
 */
export interface HealthRecorder<S extends string, R> {
  /** Catalog rows that stand for a database on the server (warm ones included). */
  countRowsOnServer(serverId: string): Promise<number>;
  /** Writes the check's result only while the server's status is still `expected`; undefined if not. */
  recordHealth(serverId: string, expected: S, result: HealthRecord<S>): Promise<R | undefined>;
}

export interface HealthCheckOutcome<S extends string, R> {
  probe: HealthProbe;
  next: NextHealthState<S>;
  checkedAt: Date;
  databasesInCatalog: number;
  /** Tenant databases on the server minus catalog rows for them; null when the server was not reached. */
  drift: number | null;
  /** The row after the check; undefined when its status changed meanwhile (nothing was written). */
  updated: R | undefined;
}

/**
 * One health check, end to end: probe, apply the transition rule, record it. The update only
 * lands if nobody changed the server's status meanwhile (an operator cordoning it, say).
 */
export async function checkServerHealth<S extends string, R>(
  recorder: HealthRecorder<S, R>,
  connections: PoolConnections,
  server: PoolServerTarget & HealthState<S>,
): Promise<HealthCheckOutcome<S, R>> {
  const probe = await probeServer(connections, server);
  const next = nextHealthState(server, probe);
  const checkedAt = new Date();
  // Counted after the probe: a row is written before its database is made, so a database the
  // probe saw always has its row by now (a drift > 0 is real, not a race with allocation).
  const databasesInCatalog = await recorder.countRowsOnServer(server.id);
  const drift = probe.tenantDatabases === null ? null : probe.tenantDatabases - databasesInCatalog;
  const updated = await recorder.recordHealth(server.id, server.status, {
    ...next,
    last_health_check: checkedAt,
    last_health_latency_ms: probe.latencyMs,
    ...(probe.postgresVersion ? { postgres_version: probe.postgresVersion } : {}),
    ...(drift !== null ? { database_drift: drift } : {}),
  });
  return { probe, next, checkedAt, databasesInCatalog, drift, updated };
}

/**
 * The warning a health check reports for a server certificate that expires within `warnDays`
 * (or has expired); null when it has longer, or when the server has none.
 */
export function certificateWarning(
  notAfter: Date | null | undefined,
  now: Date,
  warnDays: number,
): string | null {
  if (!notAfter) return null;
  const days = (notAfter.getTime() - now.getTime()) / 86_400_000;
  if (days >= warnDays) return null;
  return days <= 0
    ? `the server's TLS certificate expired on ${notAfter.toISOString()}`
    : `the server's TLS certificate expires in ${Math.floor(days)} days (${notAfter.toISOString()})`;
}

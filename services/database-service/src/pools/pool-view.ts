// The one view of a server the admin API answers with: never the whole row.
import type { DbServer, DrainFigures, ListedServer } from '@tenantdb/catalog';
import type { DrainProgress, Pool } from '@tenantdb/contracts';

export function toPool(s: ListedServer): Pool {
  return {
    id: s.id,
    name: s.name,
    driver: s.driver,
    host: s.host,
    port: s.port,
    server_type: s.server_type,
    allocation_strategy: s.allocation_strategy,
    priority: s.priority,
    status: s.status,
    status_reason: s.status_reason,
    health_status: s.health_status,
    health_failures: s.health_failures,
    last_health_check: s.last_health_check?.toISOString() ?? null,
    last_health_latency_ms: s.last_health_latency_ms,
    max_instances: s.max_instances,
    current_instances: s.current_instances,
    capacity_percentage: Math.round((s.current_instances / s.max_instances) * 1000) / 10,
    postgres_version: s.postgres_version,
    postgres_major: s.postgres_major,
    logical_replication: s.logical_replication,
    created_at: s.created_at.toISOString(),
    provisioned_at: s.provisioned_at?.toISOString() ?? null,
  };
}

/** A drain's progress (draining or drained servers only): the job's last step and the catalog now. */
export function toDrainProgress(s: DbServer, figures: DrainFigures): DrainProgress | null {
  if (s.status !== 'draining' && s.status !== 'drained') return null;
  return {
    // A server draining from before drains moved tenants has no start recorded: its last change.
    started_at: (s.drain_started_at ?? s.updated_at).toISOString(),
    requested_by: s.drain_requested_by,
    checked_at: s.drain_checked_at?.toISOString() ?? null,
    finished_at: s.drain_finished_at?.toISOString() ?? null,
    ...figures,
    blocked: s.drain_blocked,
  };
}

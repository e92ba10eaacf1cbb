// Brings one tenant's server in line with its catalog row (restricted, suspended) and clears the
// row's access_pending once it is; and one rung of the quota ladder end to end (catalog with its
// audit event, the callback, the server). Shared by database-service (suspend, resume, plan
// change) and database-worker (sampling, the reconciler), which inject the catalog side.
import type { PoolServerTarget } from './connections';
import type { AccessResult, TenantAccess } from './tenant-access';

/** What the catalog says of a tenant's access. */
export interface AccessRowLike {
  id: string;
  instance_id: string | null;
  db_server_id: string;
  db_name: string;
  db_user: string;
  quota_state: 'ok' | 'warned' | 'restricted';
  suspended_at: Date | null;
}

export interface AccessSyncDeps {
  access: Pick<TenantAccess, 'apply'>;
  serverOf(id: string): Promise<PoolServerTarget | undefined>;
  /** Clears access_pending unless the row changed meanwhile. */
  markApplied(row: AccessRowLike): Promise<boolean>;
}

export type SyncResult = AccessResult | { kind: 'no-server' };

export async function syncAccess(deps: AccessSyncDeps, row: AccessRowLike): Promise<SyncResult> {
  const server = await deps.serverOf(row.db_server_id);
  if (!server?.host) return { kind: 'no-server' };
  const result = await deps.access.apply(
    server,
    { dbName: row.db_name, dbUser: row.db_user },
    { restricted: row.quota_state === 'restricted', suspended: row.suspended_at !== null },
  );
  await deps.markApplied(row);
  return result;
}

/** The events a tenant's changes of access (and of address) send to the portal (through instance-service). */
export type TenantEvent =
  | 'database.quota_ok'
  | 'database.quota_warned'
  | 'database.quota_restricted'
  | 'database.suspended'
  | 'database.resumed'
  | 'database.moved';

export interface TenantEventNotice {
  instance_id: string;
  event: TenantEvent;
  occurred_at: string;
  /** One per transition: repeats of the notice for it are one delivery. */
  delivery_id: string;
}

export interface QuotaTransitionDeps extends AccessSyncDeps {
  /** The catalog's transition with its audit event; undefined when the row moved meanwhile. */
  transition(
    id: string,
    from: AccessRowLike['quota_state'],
    to: AccessRowLike['quota_state'],
  ): Promise<(AccessRowLike & { quota_state_at: Date }) | undefined>;
  notify(notice: TenantEventNotice): Promise<void>;
}

/** The event a quota transition sends the portal; the same for every repeat of that transition. */
export function quotaNotice(
  row: { id: string; instance_id: string | null; quota_state_at: Date },
  to: AccessRowLike['quota_state'],
): TenantEventNotice | undefined {
  if (!row.instance_id) return undefined;
  return {
    instance_id: row.instance_id,
    event: `database.quota_${to}`,
    occurred_at: row.quota_state_at.toISOString(),
    delivery_id: `${row.id}-quota-${to}-${row.quota_state_at.getTime()}`,
  };
}

/**
 * One rung: catalog first (with access_pending when the server must change, and the portal's
 * event in the outbox), then the event queued (after the commit; its delivery id makes a repeat
 * one delivery), then the server. A crash after the commit leaves access_pending and the unqueued
 * event for the reconciler; so does a queue that is away, which does not hold the server back.
 */
export async function applyQuotaTransition(
  deps: QuotaTransitionDeps,
  row: Pick<AccessRowLike, 'id' | 'quota_state'>,
  to: AccessRowLike['quota_state'],
): Promise<{ moved: boolean; sync?: SyncResult }> {
  if (row.quota_state === to) return { moved: false };
  const moved = await deps.transition(row.id, row.quota_state, to);
  if (!moved) return { moved: false };
  const notice = quotaNotice(moved, to);
  // Recorded in the outbox with the transition: a queue that cannot take it now gets it from the
  // reconciler.
  if (notice) await deps.notify(notice).catch(() => {});
  const serverChanges = row.quota_state === 'restricted' || to === 'restricted';
  return { moved: true, ...(serverChanges ? { sync: await syncAccess(deps, moved) } : {}) };
}

/** The catalog side as both services have it (UsageRepo, ServersRepo, Queues), structurally. */
export interface QuotaCatalog {
  servers: { findById(id: string): Promise<PoolServerTarget | undefined> };
  usage: {
    markAccessApplied(row: AccessRowLike): Promise<boolean>;
    transitionQuota(
      id: string,
      from: AccessRowLike['quota_state'],
      to: AccessRowLike['quota_state'],
      audit: (row: AccessRowLike & { quota_state_at: Date }) => {
        actor: string;
        action: string;
        request_id?: string | null;
        instance_id: string | null;
        db_server_id: string;
        tenant_database_id: string;
        details: Record<string, unknown>;
      },
      event: (row: AccessRowLike & { quota_state_at: Date }) => TenantEventNotice | undefined,
    ): Promise<(AccessRowLike & { quota_state_at: Date }) | undefined>;
  };
  /** The outbox: an event recorded with its change is marked once its job is queued. */
  events: { markQueued(deliveryId: string): Promise<void> };
  access: Pick<TenantAccess, 'apply'>;
  /** Queues the event's delivery (deliver-tenant-event, the delivery id as job id). */
  notify(notice: TenantEventNotice): Promise<void>;
}

/** Quota transitions audited as `actor` (and the request, when a request made them). */
export function quotaTransitions(
  c: QuotaCatalog,
  who: { actor: string; requestId?: string; reason?: string },
): QuotaTransitionDeps {
  return {
    access: c.access,
    serverOf: (id) => c.servers.findById(id),
    markApplied: (row) => c.usage.markAccessApplied(row),
    transition: (id, from, to) =>
      c.usage.transitionQuota(
        id,
        from,
        to,
        (row) => ({
          actor: who.actor,
          action: `tenant.quota_${to}`,
          request_id: who.requestId ?? null,
          instance_id: row.instance_id,
          db_server_id: row.db_server_id,
          tenant_database_id: row.id,
          details: { from, to, ...(who.reason ? { reason: who.reason } : {}) },
        }),
        (row) => quotaNotice(row, to),
      ),
    notify: async (notice) => {
      await c.notify(notice);
      await c.events.markQueued(notice.delivery_id);
    },
  };
}

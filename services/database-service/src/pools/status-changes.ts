// Operator status changes of a server: out of placement (cordon), emptied (drain: marked here,
// its tenants moved off by the worker's drain-server job), back in (uncordon, which also stops a
// drain), and out of the fleet (decommission: marked here, removed by the worker).
import {
  type AuditRepo,
  type CatalogTrx,
  type DbServer,
  type DrainsRepo,
  RETIRABLE_STATUSES,
  type ServerStatus,
  type ServersRepo,
  SLOT_HOLDING_STATUSES,
  type TenantDatabasesRepo,
} from '@tenantdb/catalog';
import type { DrainResult, Pool } from '@tenantdb/contracts';
import { ConflictError, NotFoundError, type RequestContext, UnavailableError } from '@tenantdb/http';
import type { Queues } from '@tenantdb/jobs';
import { toDrainProgress, toPool } from './pool-view';

export interface StatusChangesDeps {
  servers: Pick<ServersRepo, 'findById' | 'updateIfStatus' | 'reopen' | 'markDecommissioning'>;
  tenants: Pick<TenantDatabasesRepo, 'countByStatus'>;
  drains: Pick<DrainsRepo, 'start' | 'figures'>;
  audit: Pick<AuditRepo, 'audited'>;
  queues: Pick<Queues, 'enqueue'>;
}

/** An operator's status change: where it applies, where it is already done, and the update. */
interface StatusChange {
  verb: string;
  action: string;
  from: readonly ServerStatus[];
  done: readonly ServerStatus[];
  apply(trx: CatalogTrx): Promise<DbServer | undefined>;
}

export function createStatusChanges(deps: StatusChangesDeps) {
  const { servers, tenants, drains, audit, queues } = deps;

  async function mustFind(id: string): Promise<DbServer> {
    const server = await servers.findById(id);
    if (!server) throw new NotFoundError('no server with this id');
    return server;
  }

  /** Tenant databases the server still serves (the rows that hold its slots). */
  async function liveTenants(id: string): Promise<number> {
    const counts = await tenants.countByStatus(id);
    return SLOT_HOLDING_STATUSES.reduce((n, s) => n + (counts[s] ?? 0), 0);
  }

  /**
   * Applies a status change, idempotent where it is already done. The update is conditional on
   * the status, so a change that lands between the read and the write (an allocation filling the
   * server, a health check, another operator) is decided again on the new status, never undone.
   */
  async function changeStatus(id: string, change: StatusChange, ctx: RequestContext): Promise<DbServer> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const server = await mustFind(id);
      if (change.done.includes(server.status)) return server;
      if (!change.from.includes(server.status)) {
        throw new ConflictError(
          `cannot ${change.verb} a server that is ${server.status} (only from ${change.from.join(', ')})`,
        );
      }
      const changed = await audit.audited(change.apply, (row) => ({
        actor: ctx.actor,
        action: change.action,
        request_id: ctx.requestId,
        db_server_id: id,
        details: { from: server.status, to: row.status },
      }));
      if (changed) return changed;
    }
    throw new ConflictError('the server status keeps changing; retry');
  }

  /** Deterministic job id: a no-op while one is queued, so every retry may call it. */
  async function enqueueDecommission(serverId: string): Promise<void> {
    try {
      await queues.enqueue('decommission-server', { server_id: serverId });
    } catch {
      throw new UnavailableError(
        'the server is marked decommissioning but its removal could not be queued; retry to queue it',
      );
    }
  }

  return {
    /** No new placements; the tenants on the server stay and keep working. */
    async cordon(id: string, ctx: RequestContext): Promise<Pool> {
      const server = await changeStatus(
        id,
        {
          verb: 'cordon',
          action: 'server.cordon',
          from: ['active', 'full'],
          done: ['cordoned'],
          apply: (trx) =>
            servers.updateIfStatus(
              id,
              ['active', 'full'],
              { status: 'cordoned', status_reason: `cordoned by ${ctx.actor}` },
              trx,
            ),
        },
        ctx,
      );
      return toPool(server);
    },

    /** Back into placement; a drain under way stops at its next step (moves already begun finish). */
    async uncordon(id: string, ctx: RequestContext): Promise<Pool> {
      const server = await changeStatus(
        id,
        {
          verb: 'uncordon',
          action: 'server.uncordon',
          from: ['cordoned', 'draining', 'drained'],
          done: ['active', 'full'],
          apply: (trx) => servers.reopen(id, ['cordoned', 'draining', 'drained'], trx),
        },
        ctx,
      );
      return toPool(server);
    },

    /**
     * Empties a server: out of placement at once, then database-worker's drain-server job moves
     * every tenant off it and marks it drained. Already draining or drained is success (and queues
     * the job again, a no-op while it is queued). A dedicated server is emptied by its tenant's
     * plan change, not a drain: every "anywhere" target is a shared pool.
     */
    async drain(id: string, ctx: RequestContext): Promise<DrainResult> {
      const found = await mustFind(id);
      if (found.server_type === 'platform') throw new ConflictError('a platform server is not drained');
      if (found.server_type === 'dedicated')
        throw new ConflictError(
          "a dedicated server is emptied by a plan change of its tenant (its only tenant would go to a shared pool); change the allocation's plan instead",
        );
      const from = ['active', 'full', 'cordoned'] as const;
      const server = await changeStatus(
        id,
        {
          verb: 'drain',
          action: 'server.drain',
          from,
          done: ['draining', 'drained'],
          apply: (trx) => drains.start(id, from, ctx.actor, trx),
        },
        ctx,
      );
      if (server.status === 'draining') {
        try {
          await queues.enqueue('drain-server', { server_id: id });
        } catch {
          throw new UnavailableError(
            'the server is draining but its drain could not be queued; retry to queue it (reconcile also picks it up)',
          );
        }
      }
      const figures = await drains.figures(server);
      return {
        ...toPool(server),
        remaining_tenants: figures.tenants_left,
        drain: toDrainProgress(server, figures),
      };
    },

    /**
     * An empty server → decommissioning, then the worker removes it. The job is queued after
     * commit; when Redis refuses, the row stays decommissioning and a repeat queues it again.
     */
    async decommission(
      id: string,
      ctx: RequestContext,
    ): Promise<{ status: 'decommissioning' | 'decommissioned'; pool: Pool }> {
      for (let attempt = 0; attempt < 3; attempt++) {
        const server = await mustFind(id);
        if (server.status === 'decommissioned') return { status: 'decommissioned', pool: toPool(server) };
        if (server.status === 'decommissioning') {
          await enqueueDecommission(id);
          return { status: 'decommissioning', pool: toPool(server) };
        }
        // A server still being created must finish or fail first.
        if (!(RETIRABLE_STATUSES as readonly ServerStatus[]).includes(server.status)) {
          throw new ConflictError(
            `the server is ${server.status}: let provisioning finish or fail before decommissioning it`,
          );
        }
        // current_instances too: it can run ahead of the rows (drift the reconciler repairs).
        const held = Math.max(await liveTenants(id), server.current_instances);
        if (held > 0) {
          throw new ConflictError(
            `the server still holds ${held} tenant database${held === 1 ? '' : 's'}; release or move ${held === 1 ? 'it' : 'them'} first`,
          );
        }
        const marked = await audit.audited(
          (trx) =>
            servers.markDecommissioning(
              id,
              RETIRABLE_STATUSES,
              `decommissioning, requested by ${ctx.actor}`,
              trx,
            ),
          () => ({
            actor: ctx.actor,
            action: 'server.decommission',
            request_id: ctx.requestId,
            db_server_id: id,
            details: { from: server.status, name: server.name, driver: server.driver },
          }),
        );
        if (marked) {
          await enqueueDecommission(id);
          return { status: 'decommissioning', pool: toPool(marked) };
        }
        // A tenant was placed or the status changed since the read: decide again.
      }
      throw new ConflictError('the server keeps changing; retry');
    },
  };
}

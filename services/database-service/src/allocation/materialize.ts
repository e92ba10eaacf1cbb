// The SQL on the pool server after a reservation committed, for shared and dedicated placement
// alike: the row becomes ready, or the failure is compensated (slot freed, row failed, leftovers
// dropped).
import type { ServerAddress, TenantDatabase, TenantDatabasesRepo } from '@tenantdb/catalog';
import { UnavailableError } from '@tenantdb/http';
import type { Logger } from '@tenantdb/observability';
import { describePgError, type Guardrails, type TenantOps } from '@tenantdb/pool-server';
import type { AllocationConfig } from './allocation.service';

const CREATING = ['creating'] as const;

export interface MaterializeDeps {
  tenants: Pick<TenantDatabasesRepo, 'transition' | 'leaveSlot' | 'heartbeat'>;
  tenantOps: Pick<TenantOps, 'create' | 'claim' | 'drop'>;
  logger: Logger;
  config: Pick<AllocationConfig, 'heartbeatMs'>;
}

export type Materialize = ReturnType<typeof createMaterialize>;

export function createMaterialize(deps: MaterializeDeps) {
  const { tenants, tenantOps, logger, config } = deps;

  /**
   * Runs `work` while touching the creating row every heartbeatMs: the liveness reconcile reads
   * (findStuck), so it repairs a row whose attempt died within its bound and never one still running.
   */
  async function beating<T>(row: TenantDatabase, work: () => Promise<T>): Promise<T> {
    const timer = setInterval(() => {
      tenants.heartbeat(row.id).catch((err: unknown) => {
        logger.warn(
          { tenant_database_id: row.id, reason: describePgError(err) },
          'allocation heartbeat failed',
        );
      });
    }, config.heartbeatMs);
    timer.unref();
    try {
      return await work();
    } finally {
      clearInterval(timer);
    }
  }

  /** After a failure on the pool server: drop leftovers, fail the row, free the slot. */
  async function compensate(server: ServerAddress, row: TenantDatabase, err: unknown): Promise<void> {
    const reason = describePgError(err);
    logger.warn(
      { db_server_id: server.id, tenant_database_id: row.id, reason },
      'tenant database creation failed',
    );
    await tenantOps.drop(server, { dbName: row.db_name, dbUser: row.db_user }).catch(() => {
      // The server is unreachable: the reconciler removes what may be left once it is back.
    });
    await tenants.leaveSlot(row.id, CREATING, 'failed', { status_reason: reason });
  }

  /** SQL on the server after the reservation committed; the row becomes ready or is compensated. */
  return async function materialize(
    server: ServerAddress,
    row: TenantDatabase,
    password: string,
    warm = false,
    guardrails?: Guardrails,
  ): Promise<void> {
    const tenant = {
      dbName: row.db_name,
      dbUser: row.db_user,
      password,
      connectionLimit: row.connection_limit ?? 1,
      guardrails,
    };
    try {
      await beating(row, () => (warm ? tenantOps.claim(server, tenant) : tenantOps.create(server, tenant)));
    } catch (err) {
      await compensate(server, row, err);
      throw err;
    }
    const ready = await tenants.transition(row.id, CREATING, 'ready', { ready_at: 'now' });
    if (!ready) throw new UnavailableError('the allocation changed while it was being created; retry', 1);
  };
}

// Restores (migration 0020): the durable record restore-tenant advances phase by phase, like a
// move's. Every phase change is conditional on the phase it leaves; one restore into an allocation
// at a time (the partial unique index).
import { sql } from 'kysely';
import type { CatalogDb, Executor } from '../db';
import {
  ACTIVE_RESTORE_PHASES,
  type RestoreMode,
  type RestorePhase,
  type TenantRestore,
  type TenantRestoreUpdate,
} from '../types';

export type RestoresRepo = ReturnType<typeof createRestoresRepo>;

export type RestoreStart =
  | { kind: 'started'; restore: TenantRestore }
  /** A restore into this allocation is already under way. */
  | { kind: 'busy'; restore: TenantRestore };

const FINISHED: readonly RestorePhase[] = ['done', 'failed'];

export function createRestoresRepo(db: CatalogDb) {
  return {
    findById(id: string, trx: Executor = db): Promise<TenantRestore | undefined> {
      return trx.selectFrom('tenant_restores').selectAll().where('id', '=', id).executeTakeFirst();
    },

    findActiveForTenant(tenantDatabaseId: string, trx: Executor = db): Promise<TenantRestore | undefined> {
      return trx
        .selectFrom('tenant_restores')
        .selectAll()
        .where('tenant_database_id', '=', tenantDatabaseId)
        .where('phase', 'in', ACTIVE_RESTORE_PHASES)
        .executeTakeFirst();
    },

    async start(
      req: {
        backup_id: string;
        tenant_database_id: string;
        mode: RestoreMode;
        requested_by: string;
        request_id: string | null;
      },
      trx: Executor = db,
    ): Promise<RestoreStart> {
      const inserted = await trx
        .insertInto('tenant_restores')
        .values({ ...req, phase: 'pending' })
        .onConflict((oc) =>
          oc
            .column('tenant_database_id')
            .where('phase', 'not in', FINISHED as RestorePhase[])
            .doNothing(),
        )
        .returningAll()
        .executeTakeFirst();
      if (inserted) return { kind: 'started', restore: inserted };
      const busy = await this.findActiveForTenant(req.tenant_database_id, trx);
      if (busy) return { kind: 'busy', restore: busy };
      return this.start(req, trx);
    },

    /**
     * Restores no worker has moved on since `before` (a lost job, a worker killed past its
     * retries), and restores whose grace period is over: for the reconciler to resume.
     */
    findStale(before: Date, trx: Executor = db): Promise<TenantRestore[]> {
      return trx
        .selectFrom('tenant_restores')
        .selectAll()
        .where((eb) =>
          eb.or([
            eb.and([
              eb('phase', 'in', ACTIVE_RESTORE_PHASES),
              eb('phase', '<>', 'grace'),
              eb('updated_at', '<', before),
            ]),
            eb.and([eb('phase', '=', 'grace'), eb('drop_old_after', '<=', sql<Date>`now()`)]),
          ]),
        )
        .execute();
    },

    /** `from` one of these phases to `to` (with `patch`); undefined when it was in none. */
    advance(
      id: string,
      from: readonly RestorePhase[],
      to: RestorePhase,
      patch: Omit<TenantRestoreUpdate, 'phase' | 'id'> = {},
      trx: Executor = db,
    ): Promise<TenantRestore | undefined> {
      return trx
        .updateTable('tenant_restores')
        .set({
          ...patch,
          phase: to,
          updated_at: sql<Date>`now()`,
          ...(FINISHED.includes(to) ? { finished_at: sql<Date>`now()` } : {}),
        })
        .where('id', '=', id)
        .where('phase', 'in', from)
        .returningAll()
        .executeTakeFirst();
    },
  };
}

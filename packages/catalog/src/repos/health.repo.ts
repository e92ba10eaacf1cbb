// What a server health check records (@tenantdb/pool-server's checkServerHealth takes this as
// its recorder): the catalog's count to compare with the server, and the conditional write.
import type { CatalogDb, Executor } from '../db';
import { type DbServer, type HealthStatus, ON_SERVER_STATUSES, type ServerStatus } from '../types';
import { createTenantDatabasesRepo } from './tenant-databases.repo';

/** What a health check writes on its server's row. */
export interface HealthRecord {
  status: ServerStatus;
  status_reason: string | null;
  health_status: HealthStatus;
  health_failures: number;
  last_health_check: Date;
  last_health_latency_ms: number | null;
  postgres_version?: string;
  database_drift?: number;
}

export type HealthRepo = ReturnType<typeof createHealthRepo>;

export function createHealthRepo(db: CatalogDb) {
  const tenants = createTenantDatabasesRepo(db);
  return {
    /** Catalog rows that stand for a database on the server (warm ones included). */
    countRowsOnServer(serverId: string, trx: Executor = db): Promise<number> {
      return tenants.countOnServer(serverId, ON_SERVER_STATUSES, trx);
    },

    /**
     * A health check's result, written only while the server is still in the status the check
     * read (`expected`): an operator's cordon or drain that lands while the probe runs is not
     * overwritten. Undefined when the status changed meanwhile (nothing was written).
     */
    recordHealth(
      id: string,
      expected: ServerStatus,
      result: HealthRecord,
      trx: Executor = db,
    ): Promise<DbServer | undefined> {
      return trx
        .updateTable('db_servers')
        .set({ ...result, updated_at: result.last_health_check })
        .where('id', '=', id)
        .where('status', '=', expected)
        .returningAll()
        .executeTakeFirst();
    },
  };
}

// What job handlers are given: the catalog (its repositories; `db` only for transactions and
// locks), pool-server access, the queues and the drivers.
import type { BackupStore } from '@tenantdb/backups';
import type {
  AuditRepo,
  BackupsRepo,
  CatalogDb,
  DbServer,
  DrainsRepo,
  FleetRepo,
  HealthRepo,
  LimitsRepo,
  MovesRepo,
  PlansRepo,
  RestoresRepo,
  RetirementRepo,
  ServersRepo,
  TenantDatabasesRepo,
  TenantEventsRepo,
  TlsRepo,
  UsageRepo,
} from '@tenantdb/catalog';
import { PermanentJobError, type Queues } from '@tenantdb/jobs';
import type { Logger } from '@tenantdb/observability';
import {
  type AccessRowLike,
  applyQuotaTransition,
  type ClientTools,
  type PoolConnections,
  type QuotaTransitionDeps,
  quotaTransitions,
  type SyncResult,
  syncAccess,
  type TenantAccess,
  type TenantOps,
} from '@tenantdb/pool-server';
import type { Provisioner, ProvisionerDriver } from '@tenantdb/provisioners';
import type { SecretBox } from '@tenantdb/secrets';
import type { Job } from 'bullmq';
import type { WorkerConfig } from './config';
import type { WorkerMetrics } from './metrics';
import type { ServerCertificates } from './tls/server-certificates';

export interface WorkerDeps {
  config: WorkerConfig;
  db: CatalogDb;
  servers: ServersRepo;
  fleet: FleetRepo;
  health: HealthRepo;
  limits: LimitsRepo;
  tenants: TenantDatabasesRepo;
  moves: MovesRepo;
  backups: BackupsRepo;
  restores: RestoresRepo;
  /** Where backups are kept; undefined when TENANTDB_BACKUP_STORE=none (backup jobs then fail). */
  backupStore: BackupStore | undefined;
  drains: DrainsRepo;
  plans: PlansRepo;
  retirement: RetirementRepo;
  audit: AuditRepo;
  tls: TlsRepo;
  /** The fleet CA and the certificates of the servers tenantdb creates. */
  certificates: ServerCertificates;
  secrets: SecretBox;
  connections: PoolConnections;
  tenantOps: TenantOps;
  tenantAccess: TenantAccess;
  usage: UsageRepo;
  tenantEvents: TenantEventsRepo;
  queues: Queues;
  drivers: ReadonlyMap<ProvisionerDriver, Provisioner>;
  metrics: WorkerMetrics;
  logger: Logger;
  /** pg_dump/pg_restore/psql found on this machine, by major (looked for once, at first use). */
  clientTools: () => Promise<ClientTools[]>;
}

export interface JobContext {
  job: Job;
  log: Logger;
}

export function driverFor(deps: WorkerDeps, server: DbServer): Provisioner {
  if (server.driver === 'external')
    throw new PermanentJobError('external servers are not provisioned by tenantdb');
  const driver = deps.drivers.get(server.driver);
  if (!driver) throw new PermanentJobError(`driver "${server.driver}" is not enabled on this worker`);
  return driver;
}

/** The catalog and queue side of access sync and quota transitions, as the worker runs them. */
export function quotaTransitionDeps(
  deps: Pick<WorkerDeps, 'servers' | 'usage' | 'tenantEvents' | 'tenantAccess' | 'queues'>,
): QuotaTransitionDeps {
  return quotaTransitions(
    {
      servers: deps.servers,
      usage: deps.usage,
      events: deps.tenantEvents,
      access: deps.tenantAccess,
      notify: async (notice) => {
        await deps.queues.enqueue('deliver-tenant-event', notice);
      },
    },
    { actor: 'database-worker' },
  );
}

export const syncTenantAccess = (
  deps: Parameters<typeof quotaTransitionDeps>[0],
  row: AccessRowLike,
): Promise<SyncResult> => syncAccess(quotaTransitionDeps(deps), row);
export { applyQuotaTransition };

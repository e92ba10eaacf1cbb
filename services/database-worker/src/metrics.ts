import {
  type BackupsRepo,
  type DrainsRepo,
  type FleetRepo,
  QUOTA_STATES,
  type TlsRepo,
  type UsageStatsRepo,
} from '@tenantdb/catalog';
import { QUEUES, type Queues } from '@tenantdb/jobs';
import { Counter, Gauge, Histogram, type Registry } from '@tenantdb/observability';

export function createWorkerMetrics(
  registry: Registry,
  fleet: Pick<FleetRepo, 'readDrift' | 'countWarmReady'>,
  queues: Queues,
  tls: Pick<TlsRepo, 'certificateExpiries'>,
  usage: Pick<UsageStatsRepo, 'figures'>,
  drains: Pick<DrainsRepo, 'tenantsLeftOnDraining'>,
  backups?: Pick<BackupsRepo, 'figures'>,
) {
  const jobs = new Counter({
    name: 'tenantdb_jobs_total',
    help: 'jobs handled by this worker, by queue, job and result',
    labelNames: ['queue', 'job', 'result'],
    registers: [registry],
  });
  const provisionDuration = new Histogram({
    name: 'tenantdb_provision_duration_seconds',
    help: 'provision-server: job start to a real login, by driver and result',
    labelNames: ['driver', 'result'],
    buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  // Read from the catalog on every scrape, so every replica reports the same figures and a
  // replica that stopped checking a server does not keep an old value alive. Only drift that is
  // not 0 has a series: the count stays with the servers that drift, not the fleet, and a server
  // back in step loses its series (an alert on != 0 resolves).
  new Gauge({
    name: 'tenantdb_catalog_drift',
    help: 'catalog vs reality, only for servers where it is not 0: kind=databases (tenant databases on the server minus catalog rows, at the last health check or reconcile), kind=slots (current_instances minus rows holding a slot, at the last reconcile)',
    labelNames: ['server', 'kind'],
    registers: [registry],
    async collect() {
      const rows = await fleet.readDrift().catch(() => []);
      this.reset();
      for (const r of rows) {
        if (r.slots !== 0) this.set({ server: r.name, kind: 'slots' }, r.slots);
        if (r.databases !== null && r.databases !== 0)
          this.set({ server: r.name, kind: 'databases' }, r.databases);
      }
    },
  });
  new Gauge({
    name: 'tenantdb_queue_jobs',
    help: 'jobs per queue and state',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      for (const name of QUEUES) {
        const counts = await queues
          .queue(name)
          .getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed')
          .catch(() => ({}) as Record<string, number>);
        for (const [state, n] of Object.entries(counts)) this.set({ queue: name, state }, n);
      }
    },
  });
  // From the catalog on every scrape, like the drift: every replica reports the same, and a
  // server's series goes with it when it is decommissioned.
  new Gauge({
    name: 'tenantdb_server_cert_expiry_seconds',
    help: 'seconds until the TLS certificate tenantdb issued the server expires (negative: expired), by server id',
    labelNames: ['server_id'],
    registers: [registry],
    async collect() {
      const rows = await tls.certificateExpiries().catch(() => undefined);
      if (!rows) return;
      this.reset();
      const now = Date.now();
      for (const r of rows)
        this.set({ server_id: r.db_server_id }, Math.round((r.not_after.getTime() - now) / 1000));
    },
  });
  new Gauge({
    name: 'tenantdb_warm_databases',
    help: 'warm (pre-created, unclaimed) databases ready to hand out',
    registers: [registry],
    async collect() {
      const n = await fleet.countWarmReady().catch(() => undefined);
      if (n !== undefined) this.set(n);
    },
  });

  usageGauges(registry, usage);

  // Tenant moves (jobs/move): transitions and results as counters; the copy's bytes; the lag of the
  // moves this replica is syncing (the largest: one series whatever the number of moves); how
  // long writes were blocked at each cut-over.
  const movePhases = new Counter({
    name: 'tenantdb_move_phases_total',
    help: 'tenant moves entering each phase, on this worker',
    labelNames: ['phase'],
    registers: [registry],
  });
  const movesFinished = new Counter({
    name: 'tenantdb_moves_total',
    help: 'tenant moves ended on this worker, by result (done, cancelled, failed)',
    labelNames: ['result'],
    registers: [registry],
  });
  const planChanges = new Counter({
    name: 'tenantdb_plan_changes_total',
    help: 'plan changes between shared and dedicated (moves carrying a plan) ended on this worker, by direction and result',
    labelNames: ['direction', 'result'],
    registers: [registry],
  });
  const moveBytes = new Counter({
    name: 'tenantdb_move_bytes_copied_total',
    help: 'bytes copied by tenant moves (logical: growth of the target database; dump: the archive)',
    registers: [registry],
  });
  const moveLag = new Gauge({
    name: 'tenantdb_move_replication_lag_bytes',
    help: 'WAL the source has that the subscription of a move syncing on this worker has not confirmed (last seen)',
    registers: [registry],
  });
  const moveBlocked = new Histogram({
    name: 'tenantdb_move_write_blocked_seconds',
    help: 'how long a cut-over blocked the tenant writes (block on the source to catalog switch)',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
    registers: [registry],
  });
  // Drains (jobs/drain-server.ts): how they ended on this worker, and (from the catalog on every
  // scrape, aggregate only: no server label) the tenants still on draining servers.
  const drainsEnded = new Counter({
    name: 'tenantdb_drains_total',
    help: 'server drains ended on this worker, by result (drained: emptied; stopped: uncordoned or left draining)',
    labelNames: ['result'],
    registers: [registry],
  });
  new Gauge({
    name: 'tenantdb_drain_tenants_left',
    help: 'tenant databases still on draining servers, fleet-wide',
    registers: [registry],
    async collect() {
      const n = await drains.tenantsLeftOnDraining().catch(() => undefined);
      if (n !== undefined) this.set(n);
    },
  });
  // Backups and restores (jobs/backup): aggregates only, never a series per tenant.
  const backupsFinished = new Counter({
    name: 'tenantdb_backups_total',
    help: 'backups ended on this worker, by result (completed, failed)',
    labelNames: ['result'],
    registers: [registry],
  });
  const backupBytes = new Counter({
    name: 'tenantdb_backup_bytes_total',
    help: 'bytes of archives (before encryption) written by completed backups',
    registers: [registry],
  });
  const backupDuration = new Histogram({
    name: 'tenantdb_backup_duration_seconds',
    help: 'how long a completed backup took (snapshot, row counts, dump, upload, read-back)',
    buckets: [0.5, 1, 5, 15, 60, 300, 900, 3600],
    registers: [registry],
  });
  const restoresFinished = new Counter({
    name: 'tenantdb_restores_total',
    help: 'restores ended on this worker, by mode and result (done, failed)',
    labelNames: ['mode', 'result'],
    registers: [registry],
  });
  // From the catalog on every scrape (one query for the three), like the drift: aggregates only.
  let figures:
    | Promise<{ overdue: number; oldestAgeSeconds: number; drillsFailing: number } | undefined>
    | undefined;
  const backupFigures = () => {
    figures ??= (backups?.figures() ?? Promise.resolve(undefined))
      .catch(() => undefined)
      .finally(() => setTimeout(() => (figures = undefined), 1000).unref());
    return figures;
  };
  const figureGauge = (
    name: string,
    help: string,
    pick: (f: { overdue: number; oldestAgeSeconds: number; drillsFailing: number }) => number,
  ) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const f = await backupFigures();
        if (f) this.set(pick(f));
      },
    });
  figureGauge(
    'tenantdb_backup_tenants_overdue',
    'ready tenants of a plan with backup_interval_hours without a completed backup within 1.5 intervals',
    (f) => f.overdue,
  );
  figureGauge(
    'tenantdb_backup_oldest_latest_age_seconds',
    'age of the oldest latest completed backup among tenants with scheduled backups (never backed up: since ready)',
    (f) => f.oldestAgeSeconds,
  );
  figureGauge(
    'tenantdb_backup_drills_failing',
    'tenants whose latest backup failed its restore drill',
    (f) => f.drillsFailing,
  );
  const drills = new Counter({
    name: 'tenantdb_backup_drills_total',
    help: 'restore drills (verify-backups) on this worker, by result (passed, failed)',
    labelNames: ['result'],
    registers: [registry],
  });
  return {
    drillFinished: (result: 'passed' | 'failed') => drills.inc({ result }),
    backupFinished(result: 'completed' | 'failed', bytes: number, seconds: number) {
      backupsFinished.inc({ result });
      if (result === 'completed') {
        backupBytes.inc(bytes);
        backupDuration.observe(seconds);
      }
    },
    restoreFinished: (mode: 'replace' | 'copy', result: 'done' | 'failed') =>
      restoresFinished.inc({ mode, result }),
    drainEnded: (result: 'drained' | 'stopped') => drainsEnded.inc({ result }),
    movePhase: (phase: string) => movePhases.inc({ phase }),
    moveFinished: (result: 'done' | 'cancelled' | 'failed') => movesFinished.inc({ result }),
    planChangeFinished: (direction: 'to_dedicated' | 'to_shared', result: 'done' | 'cancelled' | 'failed') =>
      planChanges.inc({ direction, result }),
    moveBytes: (bytes: number) => moveBytes.inc(bytes),
    moveLag: (bytes: number) => moveLag.set(bytes),
    moveWriteBlocked: (seconds: number) => moveBlocked.observe(seconds),
    job(queue: string, job: string, result: 'completed' | 'failed' | 'retry') {
      jobs.inc({ queue, job, result });
    },
    provision(driver: string, result: 'active' | 'error', seconds: number) {
      provisionDuration.observe({ driver, result }, seconds);
    },
  };
}
export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>;

/**
 * Usage and quota gauges, read from the catalog on every scrape (one read for all of them, shared
 * by the collects of one scrape): every replica reports the same figures.
 */
function usageGauges(registry: Registry, usage: Pick<UsageStatsRepo, 'figures'>): void {
  let pending: Promise<Awaited<ReturnType<UsageStatsRepo['figures']>> | undefined> | undefined;
  const read = () => {
    pending ??= usage
      .figures()
      .catch(() => undefined)
      .finally(() => setTimeout(() => (pending = undefined), 1_000).unref());
    return pending;
  };
  new Gauge({
    name: 'tenantdb_tenants_by_quota_state',
    help: 'ready tenants by quota state (ok, warned, restricted)',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      const f = await read();
      if (!f) return;
      for (const state of QUOTA_STATES) this.set({ state }, f.states.find((s) => s.state === state)?.n ?? 0);
    },
  });
  new Gauge({
    name: 'tenantdb_tenants_suspended',
    help: 'ready tenants that are suspended',
    registers: [registry],
    async collect() {
      const f = await read();
      if (f) this.set(f.states.reduce((n, s) => n + s.suspended, 0));
    },
  });
  const byType = (
    name: string,
    help: string,
    pick: (s: { used: number; storage: number | null }) => number | null,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['type'],
      registers: [registry],
      async collect() {
        const f = await read();
        if (!f) return;
        this.reset();
        const totals = new Map<string, number>();
        for (const s of f.servers)
          totals.set(s.server_type, (totals.get(s.server_type) ?? 0) + (pick(s) ?? 0));
        for (const [type, n] of totals) this.set({ type }, n);
      },
    });
  byType(
    'tenantdb_storage_used_bytes',
    "sampled size of the serving servers' ready tenants, by server type",
    (s) => s.used,
  );
  byType(
    'tenantdb_storage_capacity_bytes',
    'storage size of the serving servers that have one set, by server type',
    (s) => s.storage,
  );
  new Gauge({
    name: 'tenantdb_server_storage_used_ratio',
    help: "sampled size of a server's ready tenants over its storage size, for servers with a storage size",
    labelNames: ['server', 'type'],
    registers: [registry],
    async collect() {
      const f = await read();
      if (!f) return;
      this.reset();
      for (const s of f.servers)
        if (s.storage) this.set({ server: s.name, type: s.server_type }, s.used / s.storage);
    },
  });
  new Gauge({
    name: 'tenantdb_usage_sample_lag_seconds',
    help: 'age of the oldest usage sample of a ready tenant (never sampled: since it became ready)',
    registers: [registry],
    async collect() {
      const f = await read();
      if (f?.lagSeconds !== null && f?.lagSeconds !== undefined) this.set(f.lagSeconds);
    },
  });
}

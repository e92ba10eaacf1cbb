import type { CatalogDb } from '@tenantdb/catalog';
import { QUEUES, type Queues } from '@tenantdb/jobs';
import { Counter, Gauge, Histogram, type Registry } from '@tenantdb/observability';
import { sql } from 'kysely';

export function createWorkerMetrics(registry: Registry, db: CatalogDb, queues: Queues) {
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
  // replica that stopped checking a server does not keep an old value alive.
  new Gauge({
    name: 'tenantdb_catalog_drift',
    help: 'catalog vs reality per server: kind=databases (tenant databases on the server minus catalog rows, at the last check or reconcile), kind=slots (current_instances minus rows holding a slot)',
    labelNames: ['server', 'kind'],
    registers: [registry],
    async collect() {
      const { rows } = await sql<{ name: string; databases: number | null; slots: number }>`
        SELECT s.name, s.database_drift AS databases,
               s.current_instances - (SELECT count(*)::int FROM tenant_databases t
                                       WHERE t.db_server_id = s.id
                                         AND t.status IN ('creating', 'ready', 'releasing')) AS slots
          FROM db_servers s
         WHERE s.status <> 'decommissioned'`
        .execute(db)
        .catch(() => ({ rows: [] }));
      this.reset();
      for (const r of rows) {
        this.set({ server: r.name, kind: 'slots' }, r.slots);
        if (r.databases !== null) this.set({ server: r.name, kind: 'databases' }, r.databases);
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
  new Gauge({
    name: 'tenantdb_warm_databases',
    help: 'warm (pre-created, unclaimed) databases ready to hand out',
    registers: [registry],
    async collect() {
      const row = await db
        .selectFrom('tenant_databases')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('status', '=', 'warm')
        .where('ready_at', 'is not', null)
        .executeTakeFirst()
        .catch(() => undefined);
      if (row) this.set(Number(row.n));
    },
  });

  return {
    job(queue: string, job: string, result: 'completed' | 'failed' | 'retry') {
      jobs.inc({ queue, job, result });
    },
    provision(driver: string, result: 'active' | 'error', seconds: number) {
      provisionDuration.observe({ driver, result }, seconds);
    },
  };
}
export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>;

// database-service's domain metrics. Fleet gauges are read from the catalog when scraped.
import type { CatalogDb } from '@tenantdb/catalog';
import { Counter, Gauge, Histogram, type Registry } from '@tenantdb/observability';

export type AllocationResult = 'allocated' | 'repeat' | 'provisioning' | 'failed';

export function createServiceMetrics(registry: Registry, db: CatalogDb) {
  const allocations = new Counter({
    name: 'tenantdb_allocations_total',
    help: 'allocate requests by result',
    labelNames: ['result'],
    registers: [registry],
  });
  const allocationDuration = new Histogram({
    name: 'tenantdb_allocation_duration_seconds',
    help: 'time to answer an allocate request, by result',
    labelNames: ['result'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });

  const capacity = new Gauge({
    name: 'tenantdb_server_capacity',
    help: 'max_instances per server',
    labelNames: ['server', 'type'],
    registers: [registry],
  });
  const used = new Gauge({
    name: 'tenantdb_server_used',
    help: 'current_instances per server',
    labelNames: ['server', 'type'],
    registers: [registry],
  });
  new Gauge({
    name: 'tenantdb_servers',
    help: 'servers by status and health',
    labelNames: ['status', 'health'],
    registers: [registry],
    async collect() {
      // One catalog read per scrape fills all three fleet gauges.
      const rows = await db
        .selectFrom('db_servers')
        .select(['name', 'server_type', 'status', 'health_status', 'max_instances', 'current_instances'])
        .where('status', '<>', 'decommissioned')
        .execute()
        .catch(() => []);
      this.reset();
      capacity.reset();
      used.reset();
      const counts = new Map<string, number>();
      for (const r of rows) {
        capacity.set({ server: r.name, type: r.server_type }, r.max_instances);
        used.set({ server: r.name, type: r.server_type }, r.current_instances);
        const key = `${r.status}\u0000${r.health_status}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      for (const [key, n] of counts) {
        const [status, health] = key.split('\u0000') as [string, string];
        this.set({ status, health }, n);
      }
    },
  });

  return {
    observeAllocation(result: AllocationResult, startedAt: number) {
      allocations.inc({ result });
      allocationDuration.observe({ result }, (performance.now() - startedAt) / 1000);
    },
  };
}
export type ServiceMetrics = ReturnType<typeof createServiceMetrics>;

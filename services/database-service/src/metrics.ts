// database-service's domain metrics. Fleet gauges are read from the catalog when scraped.
import type { FleetRepo, FleetServer } from '@tenantdb/catalog';
import { Counter, Gauge, Histogram, type Registry } from '@tenantdb/observability';
import { singleFlight } from './single-flight';

export type AllocationResult = 'allocated' | 'repeat' | 'provisioning' | 'failed';

export function createServiceMetrics(registry: Registry, fleet: Pick<FleetRepo, 'gaugeServers'>) {
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

  // The three fleet gauges come from one catalog read per scrape. prom-client collects metrics
  // concurrently, so each gauge awaits the same read rather than one filling the others.
  const readFleet = singleFlight((): Promise<FleetServer[]> => fleet.gaugeServers().catch(() => []));
  new Gauge({
    name: 'tenantdb_server_capacity',
    help: 'max_instances per server',
    labelNames: ['server', 'type'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const r of await readFleet()) this.set({ server: r.name, type: r.server_type }, r.max_instances);
    },
  });
  new Gauge({
    name: 'tenantdb_server_used',
    help: 'current_instances per server',
    labelNames: ['server', 'type'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const r of await readFleet())
        this.set({ server: r.name, type: r.server_type }, r.current_instances);
    },
  });
  new Gauge({
    name: 'tenantdb_servers',
    help: 'servers by status and health',
    labelNames: ['status', 'health'],
    registers: [registry],
    async collect() {
      this.reset();
      const counts = new Map<string, { status: string; health: string; n: number }>();
      for (const r of await readFleet()) {
        const key = `${r.status}/${r.health_status}`;
        const entry = counts.get(key) ?? { status: r.status, health: r.health_status, n: 0 };
        entry.n++;
        counts.set(key, entry);
      }
      for (const { status, health, n } of counts.values()) this.set({ status, health }, n);
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

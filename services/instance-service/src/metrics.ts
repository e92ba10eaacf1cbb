// instance-service's domain metrics. Instances by status are read from the table when scraped, so
// every replica reports the same figures.
import type { AttemptOutcome, Operation } from '@tenantdb/contracts';
import { Counter, Gauge, Histogram, type Registry } from '@tenantdb/observability';
import type { InstancesRepo } from './instances/instances.repo';

export type WaitOutcome = 'ready' | 'failed' | 'provisioning' | 'unavailable' | 'abandoned';
export type CallbackResult = 'delivered' | 'retry' | 'failed';

export function createInstanceMetrics(registry: Registry, repo: InstancesRepo) {
  new Gauge({
    name: 'tenantdb_instances',
    help: 'instances by status',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      const counts = await repo.countByStatus().catch(() => undefined);
      if (!counts) return;
      this.reset();
      for (const { status, n } of counts) this.set({ status }, n);
    },
  });
  const waits = new Counter({
    name: 'tenantdb_wait_for_database_total',
    help: 'wait-for-database runs by outcome: ready, failed (bound reached or refused), provisioning (asked again after retry_after), unavailable (database-service unreachable or 5xx, retried), abandoned (the instance was deleted meanwhile)',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const timeToSettle = new Histogram({
    name: 'tenantdb_instance_settle_seconds',
    help: 'from the create request to ready or failed',
    labelNames: ['status'],
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800],
    registers: [registry],
  });
  const callbacks = new Counter({
    name: 'tenantdb_callback_deliveries_total',
    help: 'callback delivery attempts by result: delivered (2xx), retry (will try again), failed (gave up)',
    labelNames: ['result'],
    registers: [registry],
  });
  const upstream = new Histogram({
    name: 'tenantdb_database_service_request_duration_seconds',
    help: 'requests of instance-service to database-service, by operation and outcome (each attempt)',
    labelNames: ['operation', 'outcome'],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });

  return {
    wait(outcome: WaitOutcome) {
      waits.inc({ outcome });
    },
    settled(status: 'ready' | 'failed', createdAt: Date) {
      timeToSettle.observe({ status }, Math.max(0, (Date.now() - createdAt.getTime()) / 1000));
    },
    callback(result: CallbackResult) {
      callbacks.inc({ result });
    },
    databaseServiceAttempt(a: { operation: Operation; outcome: AttemptOutcome; seconds: number }) {
      upstream.observe({ operation: a.operation, outcome: a.outcome }, a.seconds);
    },
  };
}
export type InstanceMetrics = ReturnType<typeof createInstanceMetrics>;

// The three processes as the deployment files describe them, for the k8s/ and compose/ tests: the
// config schema each parses at boot, its port, and sample values for the secrets (placeholders
// that pass validation; real values never enter the tree).
import { DatabaseServiceConfig } from '../services/database-service/src/config';
import { WorkerConfig } from '../services/database-worker/src/config';
import { InstanceServiceConfig } from '../services/instance-service/src/config';

export const PROCESSES = {
  'database-service': { schema: DatabaseServiceConfig, port: 8005, api: true },
  'instance-service': { schema: InstanceServiceConfig, port: 8003, api: true },
  'database-worker': { schema: WorkerConfig, port: 9464, api: false },
} as const;
export type ProcessName = keyof typeof PROCESSES;

export const SECRET_SAMPLES: Record<string, string> = {
  DATABASE_URL: 'postgres://tenantdb:x@catalog:5432/tenantdb',
  REDIS_URL: 'redis://redis:6379',
  TENANTDB_ADMIN_TOKEN: 'a'.repeat(32),
  TENANTDB_ALLOCATE_TOKEN: 'b'.repeat(32),
  TENANTDB_PORTAL_TOKEN: 'c'.repeat(32),
  TENANTDB_CALLBACK_SECRET: 'd'.repeat(32),
  TENANTDB_ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 1).toString('base64')}`,
};

/** Variable names a process's schema reads. */
export const variablesOf = (name: ProcessName): string[] => Object.keys(PROCESSES[name].schema.shape);

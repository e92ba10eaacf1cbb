import { encryptionKeys, env, parseConfig, postgresSettings, z } from '@tenantdb/config';

const seconds = (n: number) => n * 1000;

export const WorkerConfig = z.object({
  DATABASE_URL: z.string().min(1).describe('catalog Postgres connection string'),
  REDIS_URL: z.string().min(1),
  TENANTDB_ENCRYPTION_KEYS: encryptionKeys,
  TENANTDB_QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/)
    .default('tenantdb'),
  DATABASE_WORKER_HOST: z.string().default('0.0.0.0'),
  DATABASE_WORKER_PORT: env.port(9464).describe('/metrics, /healthz, /readyz'),
  TENANTDB_LOCAL_ROOT: z
    .string()
    .default('.tenantdb/servers')
    .describe('local driver: where server directories live'),
  TENANTDB_POOL_MAX_INSTANCES: env
    .int(50, 1, 10_000)
    .describe('slots of each shared pool the planner provisions'),
  TENANTDB_SHARED_HEADROOM: env
    .int(10, 0, 100_000)
    .describe('free shared slots the planner keeps (at least 1)'),
  TENANTDB_MAX_PENDING_POOLS: env.int(3, 1, 100).describe('shared pools starting at once, at most'),
  TENANTDB_WARM_DATABASES: env.int(5, 0, 1000).describe('pre-created databases kept per active shared pool'),
  TENANTDB_HEALTH_INTERVAL_MS: env.int(seconds(300), 1000),
  TENANTDB_CAPACITY_INTERVAL_MS: env.int(seconds(30), 1000),
  TENANTDB_RECONCILE_INTERVAL_MS: env.int(seconds(600), 1000),
  TENANTDB_CLEANUP_INTERVAL_MS: env.int(seconds(86_400), 1000),
  TENANTDB_READY_TIMEOUT_MS: env
    .int(seconds(60), 1000)
    .describe('how long a new server may take to accept a login'),
  TENANTDB_JOB_LOCK_MS: env
    .int(seconds(30), 1000)
    .describe('a job whose worker stops renewing this lock is retried'),
  TENANTDB_STALE_ALLOCATION_MS: env
    .int(seconds(600), 1000)
    .describe('reconcile: creating/releasing rows older are repaired'),
  TENANTDB_SHUTDOWN_DEADLINE_MS: env.int(seconds(25), 1000),
  TENANTDB_SERVER_SETTINGS: postgresSettings.describe(
    'extra Postgres settings for provisioned servers: name=value,name=value',
  ),
  LOG_LEVEL: env.logLevel(),
});
export type WorkerConfig = z.output<typeof WorkerConfig>;

export const loadConfig = (source?: Record<string, string | undefined>) => parseConfig(WorkerConfig, source);

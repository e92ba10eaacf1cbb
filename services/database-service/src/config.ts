import { distinctSecrets, encryptionKeys, env, parseConfig, z } from '@tenantdb/config';

export const DatabaseServiceConfig = z
  .object({
    DATABASE_URL: z.string().min(1).describe('catalog Postgres connection string'),
    REDIS_URL: z.string().min(1).describe('Redis for the BullMQ queues'),
    DATABASE_SERVICE_HOST: z.string().default('0.0.0.0'),
    DATABASE_SERVICE_PORT: env.port(8005),
    TENANTDB_ADMIN_TOKEN: env.token().describe('bearer token with the admin scope (and allocate)'),
    TENANTDB_ALLOCATE_TOKEN: env.token().describe('bearer token with the allocate scope (instance-service)'),
    TENANTDB_ENCRYPTION_KEYS: encryptionKeys.describe(
      'keys for secrets at rest: <id>:<base64 32 bytes>[,<older id>:<key>…]; the first encrypts',
    ),
    TENANTDB_PLACEMENT_STRATEGY: z
      .enum(['pack', 'spread'])
      .default('pack')
      .describe('pack fills the fullest pool first; spread the emptiest'),
    TENANTDB_DEFAULT_DRIVER: z
      .enum(['local', 'swarm', 'kubernetes'])
      .default('local')
      .describe(
        'driver of dedicated servers and admin-created pools; database-worker must enable it (TENANTDB_DRIVERS)',
      ),
    TENANTDB_RETRY_AFTER_SECONDS: env.int(5, 1, 3600).describe('retry_after answered with 202 provisioning'),
    TENANTDB_RATE_LIMIT_PER_MINUTE: env.int(6000, 1).describe('requests per minute per token'),
    TENANTDB_BODY_LIMIT_BYTES: env.int(16_384, 1024, 1_048_576),
    TENANTDB_CATALOG_POOL_SIZE: env.int(20, 1, 500),
    TENANTDB_CATALOG_ACQUIRE_TIMEOUT_MS: env
      .int(15_000, 100, 120_000)
      .describe('how long a request waits for a catalog connection before answering 503'),
    TENANTDB_RELEASE_LOCK_TIMEOUT_MS: env
      .int(5_000, 10, 60_000)
      .describe(
        'how long a release waits for a rotation of the same allocation (holding a catalog connection) before answering 503 with Retry-After',
      ),
    TENANTDB_ALLOCATION_HEARTBEAT_MS: env
      .int(15_000, 50, 60_000)
      .describe(
        "how often an allocation being created touches its row; keep it well under database-worker's TENANTDB_STALE_ALLOCATION_MS",
      ),
    TENANTDB_QUEUE_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/)
      .default('tenantdb'),
    LOG_LEVEL: env.logLevel(),
  })
  // Checked even when other variables are wrong, so that every problem is reported at once.
  .superRefine(distinctSecrets(['TENANTDB_ADMIN_TOKEN', 'TENANTDB_ALLOCATE_TOKEN']), { when: () => true });
export type DatabaseServiceConfig = z.output<typeof DatabaseServiceConfig>;

export const loadConfig = (source?: Record<string, string | undefined>) =>
  parseConfig(DatabaseServiceConfig, source);

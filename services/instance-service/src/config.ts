import { isIP } from 'node:net';
import { distinctSecrets, env, httpEdgeSettings, parseConfig, z } from '@tenantdb/config';
import { parseCidr } from './callbacks/targets';

const minutes = (n: number) => n * 60_000;

/**
 * Where callbacks may go (callbacks/targets.ts): exact host names, `*.domain`, IP addresses and
 * CIDR ranges. Empty: any host whose addresses are all public.
 */
const allowedHosts = z
  .string()
  .default('')
  .transform((raw, ctx) => {
    const hosts = raw
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter(Boolean);
    for (const host of hosts) {
      const name = /^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(host);
      const address = isIP(host.replace(/^\[(.*)\]$/, '$1')) !== 0;
      if (!name && !address && !parseCidr(host)) {
        ctx.addIssue({
          code: 'custom',
          message: 'each entry must be a host name, *.domain, an IP address or a CIDR range (10.0.0.0/8)',
        });
        return z.NEVER;
      }
    }
    return hosts;
  });

export const InstanceServiceConfig = z
  .object({
    DATABASE_URL: z.string().min(1).describe('catalog Postgres connection string (schema "instances")'),
    REDIS_URL: z.string().min(1).describe('Redis for the BullMQ queues'),
    INSTANCE_SERVICE_HOST: z.string().default('0.0.0.0'),
    INSTANCE_SERVICE_PORT: env.port(8003),
    TENANTDB_PORTAL_TOKEN: env.token().describe('bearer token of the signup portal'),
    DATABASE_SERVICE_URL: env.url().default('http://127.0.0.1:8005'),
    TENANTDB_DATABASE_SERVICE_CA_FILE: z
      .string()
      .optional()
      .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()))
      .describe(
        "PEM CA certificate(s) that signed database-service's certificate, for an https:// DATABASE_SERVICE_URL with a private CA (the system's CAs otherwise)",
      ),
    TENANTDB_ALLOCATE_TOKEN: env.token().describe('bearer token with the allocate scope of database-service'),
    TENANTDB_DATABASE_WAIT_MS: env
      .int(minutes(15), 1000, minutes(7 * 24 * 60))
      .describe('how long an instance may wait for its database before it fails'),
    TENANTDB_DATABASE_SERVICE_TIMEOUT_MS: env
      .int(15_000, 100, 300_000)
      .describe('deadline of one request to database-service'),
    TENANTDB_DATABASE_SERVICE_RETRIES: env
      .int(2, 0, 10)
      .describe('retries of one request to database-service after a network error or a 5xx'),
    TENANTDB_CALLBACK_SECRET: env.token().describe('HMAC-SHA256 key that signs callback bodies'),
    TENANTDB_CALLBACK_MAX_ATTEMPTS: env.int(12, 1, 100).describe('deliveries of one callback, at most'),
    TENANTDB_CALLBACK_TIMEOUT_MS: env.int(10_000, 100, 120_000),
    TENANTDB_CALLBACK_ALLOWED_HOSTS: allowedHosts.describe(
      'where callbacks may go: host names, *.domain, IP addresses, CIDR ranges; loopback, private and reserved addresses only when listed',
    ),
    TENANTDB_CALLBACK_CONCURRENCY: env
      .int(10, 1, 500)
      .describe(
        'callback deliveries at once per replica (their own queue: slow receivers never hold up signups)',
      ),
    TENANTDB_INSTANCE_SWEEP_INTERVAL_MS: env
      .int(60_000, 1000)
      .describe('how often unsettled instances get their job re-enqueued (lost jobs)'),
    TENANTDB_SCHEDULE_CHECK_MS: env
      .int(60_000, 1000)
      .describe('how often a replica re-installs the sweep schedule if Redis has lost it'),
    TENANTDB_INSTANCE_JOB_CONCURRENCY: env.int(20, 1, 500),
    TENANTDB_JOB_LOCK_MS: env.int(30_000, 1000),
    TENANTDB_SHUTDOWN_DEADLINE_MS: env.int(25_000, 1000),
    ...httpEdgeSettings,
    TENANTDB_API_KEY_CACHE_MS: env
      .int(5_000, 0, 300_000)
      .describe(
        'how long a checked portal key is trusted; a revoke in database-service reaches here within it',
      ),
    TENANTDB_BODY_LIMIT_BYTES: env.int(16_384, 1024, 1_048_576),
    TENANTDB_CATALOG_POOL_SIZE: env.int(20, 1, 500),
    TENANTDB_CATALOG_ACQUIRE_TIMEOUT_MS: env.int(15_000, 100, 120_000),
    TENANTDB_QUEUE_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/)
      .default('tenantdb'),
    LOG_LEVEL: env.logLevel(),
  })
  // Checked even when other variables are wrong, so that every problem is reported at once.
  .superRefine(
    distinctSecrets(['TENANTDB_PORTAL_TOKEN', 'TENANTDB_ALLOCATE_TOKEN', 'TENANTDB_CALLBACK_SECRET']),
    { when: () => true },
  );
export type InstanceServiceConfig = z.output<typeof InstanceServiceConfig>;

export const loadConfig = (source?: Record<string, string | undefined>) =>
  parseConfig(InstanceServiceConfig, source);

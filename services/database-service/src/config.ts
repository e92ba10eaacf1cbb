import {
  backupStoreSettings,
  checkBackupStore,
  distinctSecrets,
  encryptionKeys,
  env,
  httpEdgeSettings,
  parseConfig,
  poolAdminTls,
  z,
} from '@tenantdb/config';

const SCOPES = ['allocate', 'admin', 'admin:read', 'portal'];
/** `value=scope,…`: which claim values grant which scope. */
const oidcScopeMap = z
  .string()
  .default('admin=admin,admin:read=admin:read')
  .transform((raw, ctx) => {
    const map: Record<string, string> = {};
    for (const part of raw
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean)) {
      const eq = part.lastIndexOf('=');
      const [value, scope] = [part.slice(0, eq), part.slice(eq + 1)];
      if (eq <= 0 || !SCOPES.includes(scope)) {
        ctx.addIssue({ code: 'custom', message: `each entry must be <claim value>=<${SCOPES.join('|')}>` });
        return z.NEVER;
      }
      map[value] = scope;
    }
    return map;
  });

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
    ...httpEdgeSettings,
    // The backup store: checked before a backup or restore is recorded (503 when it is down).
    ...backupStoreSettings,
    TENANTDB_MAX_INSTANCES_PER_CUSTOMER: env
      .int(100, 0, 1_000_000)
      .describe(
        "live instances (allocations) one customer may hold; a plan's max_instances_per_customer overrides it",
      ),
    TENANTDB_MAX_DEDICATED_PER_CUSTOMER: env
      .int(5, 0, 100_000)
      .describe(
        "dedicated servers one customer may have; a plan's max_dedicated_servers_per_customer overrides it",
      ),
    TENANTDB_MAX_SERVERS: env
      .int(500, 1, 1_000_000)
      .describe(
        'fleet ceiling: servers tenantdb runs (not decommissioned; registered external ones not counted); set the same on database-worker',
      ),
    TENANTDB_MAX_STARTING_SERVERS: env
      .int(10, 1, 10_000)
      .describe(
        'servers (shared and dedicated) provisioning at once, at most; set the same on database-worker',
      ),
    TENANTDB_BODY_LIMIT_BYTES: env.int(16_384, 1024, 1_048_576),
    TENANTDB_API_KEY_CACHE_MS: env
      .int(5_000, 0, 300_000)
      .describe('how long a replica trusts a checked API key; a revoke reaches other replicas within it'),
    TENANTDB_POOL_ADMIN_TLS: poolAdminTls,
    TENANTDB_CATALOG_POOL_SIZE: env.int(20, 1, 500),
    TENANTDB_CATALOG_ACQUIRE_TIMEOUT_MS: env
      .int(15_000, 100, 120_000)
      .describe('how long a request waits for a catalog connection before answering 503'),
    TENANTDB_OIDC_ISSUER: z
      .union([z.literal(''), z.url({ protocol: /^https?$/ })])
      .default('')
      .describe('OpenID issuer whose bearer JWTs are accepted (operators); empty: OIDC off'),
    TENANTDB_OIDC_AUDIENCE: z
      .string()
      .max(512)
      .default('')
      .describe('the aud a token must carry (required with an issuer)'),
    TENANTDB_OIDC_SCOPE_CLAIM: z
      .string()
      .regex(/^[A-Za-z0-9_:./-]{1,64}$/)
      .default('scope')
      .describe('claim holding the scopes or roles: a space-separated string or an array'),
    TENANTDB_OIDC_SCOPE_MAP: oidcScopeMap.describe(
      'claim value=tenantdb scope, comma-separated; values not listed grant nothing',
    ),
    TENANTDB_OIDC_CLOCK_SKEW_SECONDS: env
      .int(30, 0, 300)
      .describe('clock difference tolerated on exp/nbf/iat'),
    TENANTDB_OIDC_JWKS_CACHE_SECONDS: env
      .int(600, 1, 86_400)
      .describe("how long the issuer's keys are kept; an unknown key id refetches them sooner"),
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
    TENANTDB_MOVES_PER_SERVER: env
      .int(2, 1, 100)
      .describe(
        "tenant moves one server takes part in at once (source or target); a move beyond it is refused (409). Set as on database-worker, which sizes servers' replication slots from it",
      ),
    TENANTDB_QUEUE_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/)
      .default('tenantdb'),
    LOG_LEVEL: env.logLevel(),
  })
  // Checked even when other variables are wrong, so that every problem is reported at once.
  .superRefine(distinctSecrets(['TENANTDB_ADMIN_TOKEN', 'TENANTDB_ALLOCATE_TOKEN']), { when: () => true })
  .superRefine(checkBackupStore, { when: () => true })
  .superRefine((config, ctx) => {
    if (config.TENANTDB_OIDC_ISSUER && !config.TENANTDB_OIDC_AUDIENCE)
      ctx.addIssue({
        code: 'custom',
        path: ['TENANTDB_OIDC_AUDIENCE'],
        message: 'is required with TENANTDB_OIDC_ISSUER',
      });
  });
export type DatabaseServiceConfig = z.output<typeof DatabaseServiceConfig>;

export const loadConfig = (source?: Record<string, string | undefined>) =>
  parseConfig(DatabaseServiceConfig, source);

import {
  backupStoreSettings,
  checkBackupStore,
  encryptionKeys,
  env,
  parseConfig,
  poolAdminTls,
  postgresSettings,
  z,
} from '@tenantdb/config';

const seconds = (n: number) => n * 1000;

export const DRIVER_NAMES = ['local', 'swarm', 'kubernetes'] as const;

// Optional settings: unset and empty (`X=` in an env file) both mean "not set".
const blankToUndefined = (v: string | undefined) =>
  v === undefined || v.trim() === '' ? undefined : v.trim();
const optionalText = (re?: RegExp, message?: string) =>
  z
    .string()
    .optional()
    .transform(blankToUndefined)
    .refine((v) => v === undefined || !re || re.test(v), { message: message ?? `must match ${re}` });
const optionalNumber = (min: number, max: number, integer = false) =>
  z
    .string()
    .optional()
    .transform(blankToUndefined)
    .pipe(
      z
        .string()
        .regex(integer ? /^\d+$/ : /^\d+(\.\d+)?$/, integer ? 'must be a whole number' : 'must be a number')
        .transform(Number)
        .pipe(z.number().min(min).max(max))
        .optional(),
    );
/** A comma list (`a,b,c`); blanks dropped. */
const commaList = (item: RegExp, message: string) =>
  z
    .string()
    .default('')
    .transform((raw) =>
      raw
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean),
    )
    .refine((items) => items.every((i) => item.test(i)), { message });
/** `key=value,key=value` (Kubernetes labels: a node selector). */
const labelMap = z
  .string()
  .default('')
  .transform((raw, ctx) => {
    const map: Record<string, string> = {};
    for (const part of raw
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean)) {
      const [k, v, extra] = part.split('=');
      if (
        !k ||
        v === undefined ||
        extra !== undefined ||
        !/^([a-z0-9.-]+\/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(k)
      ) {
        ctx.addIssue({ code: 'custom', message: 'each entry must be label=value' });
        return z.NEVER;
      }
      map[k] = v;
    }
    return map;
  });

export const WorkerConfig = z
  .object({
    DATABASE_URL: z.string().min(1).describe('catalog Postgres connection string'),
    REDIS_URL: z.string().min(1),
    TENANTDB_ENCRYPTION_KEYS: encryptionKeys,
    TENANTDB_QUEUE_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/)
      .default('tenantdb'),
    DATABASE_WORKER_HOST: z.string().default('0.0.0.0'),
    DATABASE_WORKER_PORT: env.port(9464).describe('/metrics, /healthz, /readyz'),
    TENANTDB_DRIVERS: z
      .string()
      .default('local')
      .transform((raw) =>
        raw
          .split(',')
          .map((d) => d.trim())
          .filter(Boolean),
      )
      .pipe(
        z
          .array(z.enum(DRIVER_NAMES))
          .min(1, 'name at least one driver')
          .refine((list) => new Set(list).size === list.length, 'a driver is listed twice'),
      )
      .describe(
        'enabled provisioner drivers, comma list; the first is what the capacity planner provisions with',
      ),
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
    TENANTDB_MAX_SERVERS: env
      .int(500, 1, 1_000_000)
      .describe('the capacity planner provisions no pool beyond this fleet ceiling'),
    TENANTDB_MAX_STARTING_SERVERS: env
      .int(10, 1, 10_000)
      .describe('the capacity planner starts no pool while this many servers are starting'),
    TENANTDB_WARM_DATABASES: env
      .int(5, 0, 1000)
      .describe('pre-created databases kept per active shared pool'),
    TENANTDB_HEALTH_INTERVAL_MS: env.int(seconds(300), 1000),
    TENANTDB_HEALTH_CONCURRENCY: env
      .int(16, 1, 1000)
      .describe(
        'health checks at once across all replicas (each holds one connection to one server); set the same on every replica',
      ),
    TENANTDB_CAPACITY_INTERVAL_MS: env.int(seconds(30), 1000),
    TENANTDB_RECONCILE_INTERVAL_MS: env.int(seconds(300), 1000),
    TENANTDB_RECONCILE_CONCURRENCY: env
      .int(8, 1, 1000)
      .describe('servers reconcile compares with the catalog at once (one connection each, closed after)'),
    TENANTDB_CLEANUP_INTERVAL_MS: env.int(seconds(86_400), 1000),
    TENANTDB_USAGE_SAMPLE_PERIOD_MS: env
      .int(seconds(900), 1000)
      .describe(
        'every ready tenant is measured (pg_database_size, connections) once per period; servers are spread over it, one sampling connection per server at a time',
      ),
    TENANTDB_DATA_CONCURRENCY: env
      .int(4, 1, 1000)
      .describe(
        'jobs of the data queue (tenant moves, usage sampling) at once per replica; each sample holds one server connection',
      ),
    TENANTDB_ACCESS_REPAIR_AFTER_MS: env
      .int(seconds(60), 1000)
      .describe(
        'reconcile: a tenant whose quota state or suspension is not yet applied on its server for longer is applied again',
      ),
    TENANTDB_ACCESS_MIGRATION_BATCH: env
      .int(100, 0, 100_000)
      .describe(
        'reconcile: tenants moved per pass from the old arrangement (login role owns the database) to the owner role; 0 stops it',
      ),
    TENANTDB_SCHEDULE_CHECK_MS: env
      .int(seconds(60), 1000)
      .describe('how often a replica re-installs job schedules Redis has lost'),
    TENANTDB_READY_TIMEOUT_MS: env
      .int(seconds(60), 1000)
      .describe('how long a new server may take to accept a login'),
    TENANTDB_JOB_LOCK_MS: env
      .int(seconds(30), 1000)
      .describe('a job whose worker stops renewing this lock is retried'),
    TENANTDB_STALE_ALLOCATION_MS: env
      .int(seconds(120), 1000)
      .describe(
        "reconcile: creating/releasing rows not touched for longer are repaired (an attempt still creating touches its row every database-service's TENANTDB_ALLOCATION_HEARTBEAT_MS)",
      ),
    TENANTDB_SHUTDOWN_DEADLINE_MS: env.int(seconds(25), 1000),
    TENANTDB_LOCAL_POSTGRES_MAJOR: z
      .enum(['15', '17'])
      .default('15')
      .transform(Number)
      .describe(
        'local driver: PostgreSQL major of new servers whose pool asks for none (15 matches Debian 12 client tools)',
      ),

    // --- tenant moves (docs/runbook.md "moving a tenant") ---
    TENANTDB_MOVES_PER_SERVER: env
      .int(2, 1, 100)
      .describe(
        'moves one server takes part in at once, as source or target; sizes its replication slots and WAL senders',
      ),
    TENANTDB_MAX_SLOT_WAL_KEEP_MB: env
      .int(4096, 64, 1_048_576)
      .describe(
        'max_slot_wal_keep_size of new servers: WAL a stuck move may hold before its slot is dropped',
      ),
    TENANTDB_MOVE_GRACE_MS: env
      .int(seconds(600), 0)
      .describe("how long a moved tenant's source database stays (closed) before it is dropped"),
    TENANTDB_MOVE_SYNC_TIMEOUT_MS: env
      .int(seconds(3600), 1000)
      .describe('a move whose copy has not caught up by then fails (and is undone)'),
    TENANTDB_MOVE_CUTOVER_TIMEOUT_MS: env
      .int(seconds(30), 1000)
      .describe(
        'how long writes may stay blocked waiting for the target to catch up; then the cut-over is abandoned',
      ),
    // --- backups and restores (docs/operations.md "restoring a tenant") ---
    ...backupStoreSettings,
    TENANTDB_BACKUPS_PER_SERVER: env
      .int(1, 1, 100)
      .describe('backups (pg_dump) one server runs at once at most, scheduled ones held back to it'),
    TENANTDB_BACKUP_SCHEDULE_MS: env
      .int(seconds(300), 1000)
      .describe('how often due backups are started and expired ones deleted'),
    TENANTDB_BACKUP_DRILL_INTERVAL_MS: env
      .int(seconds(86_400), 1000)
      .describe('how often restore drills run (verify-backups: a sample of recent backups each time)'),
    TENANTDB_RESTORE_GRACE_MS: env
      .int(seconds(3600), 0)
      .describe('how long the database a restore replaced stays (closed) before it is dropped'),
    TENANTDB_PLACEMENT_STRATEGY: z
      .enum(['pack', 'spread'])
      .default('pack')
      .describe(
        'where a drain sends each tenant among the shared pools with room: pack fills the fullest first, spread the emptiest (as on database-service)',
      ),
    TENANTDB_DRAIN_STEP_MS: env
      .int(seconds(5), 100)
      .describe(
        'how often a drain (drain-server) looks at its server again: starts the next moves, records what is blocked, ends it drained',
      ),
    TENANTDB_DRAIN_MOVE_ATTEMPTS: env
      .int(3, 1, 100)
      .describe(
        'moves of one tenant a drain starts before it gives up on that tenant and reports it blocked (with the last error)',
      ),
    TENANTDB_CLIENT_TOOL_DIRS: commaList(/^\/.*/, 'each entry must be an absolute directory').describe(
      'extra directories searched for pg_dump, pg_restore and psql (besides PATH and /usr/lib/postgresql/*/bin)',
    ),
    TENANTDB_SERVER_SETTINGS: postgresSettings.describe(
      'extra Postgres settings for provisioned servers: name=value,name=value',
    ),
    LOG_LEVEL: env.logLevel(),

    // --- TLS of the servers tenantdb creates (docs/security.md) ---
    TENANTDB_POOL_ADMIN_TLS: poolAdminTls,
    TENANTDB_SERVER_CERT_DAYS: env
      .int(365, 1, 3650)
      .describe('validity of the TLS certificate a new server gets from the fleet CA'),
    TENANTDB_CERT_EXPIRY_WARNING_DAYS: env
      .int(21, 1, 3650)
      .describe('the health check warns about a server certificate expiring within this many days'),

    // --- swarm driver (docs/drivers.md) ---
    TENANTDB_SWARM_DOCKER_HOST: z
      .string()
      .regex(/^(unix:\/\/\/.+|tcp:\/\/[^/]+)$/, 'must be unix:///path/docker.sock or tcp://host:port')
      .default('unix:///var/run/docker.sock')
      .describe('Docker API of a swarm manager'),
    TENANTDB_SWARM_DOCKER_TLS_DIR: optionalText().describe(
      'ca.pem, cert.pem, key.pem for a tcp:// Docker API',
    ),
    TENANTDB_SWARM_FLEET: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/)
      .default('tenantdb')
      .describe('label value naming this deployment: a swarm shared by several only sees its own objects'),
    TENANTDB_SWARM_IMAGE: z
      .string()
      .min(1)
      .default('postgres:15-alpine')
      .describe('pin it: postgres:15.10-alpine; moves need client tools of at least the image major'),
    TENANTDB_SWARM_NETWORK: optionalText(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/).describe(
      'overlay network servers join',
    ),
    TENANTDB_SWARM_PUBLISH_MODE: z
      .enum(['host', 'ingress', 'none'])
      .default('host')
      .describe('host: port on the node running the task; ingress: routing mesh; none: overlay network only'),
    TENANTDB_SWARM_PORT_RANGE: z
      .string()
      .default('25432-26431')
      .transform((raw, ctx) => {
        const m = /^(\d{1,5})-(\d{1,5})$/.exec(raw.trim());
        const from = Number(m?.[1]);
        const to = Number(m?.[2]);
        if (!m || from < 1 || to > 65535 || from > to) {
          ctx.addIssue({ code: 'custom', message: 'must be from-to, e.g. 25432-26431' });
          return z.NEVER;
        }
        return { from, to };
      })
      .describe('host-mode published ports are taken from this range'),
    TENANTDB_SWARM_CONNECT_HOST: optionalText().describe(
      'address the worker and tenants connect to for published ports (default: the node the task runs on)',
    ),
    TENANTDB_SWARM_CONSTRAINTS: commaList(
      /^[A-Za-z0-9_.-]+\s*(==|!=)\s*\S+$/,
      'each entry must be a swarm constraint, e.g. node.labels.tenantdb.postgres==true',
    ),
    TENANTDB_SWARM_PIN_TO_NODE: env.bool(true).describe('keep each server on the node where its volume is'),
    TENANTDB_SWARM_CPU_LIMIT: optionalNumber(0.01, 1024).describe('CPUs, for servers whose row sets none'),
    TENANTDB_SWARM_MEMORY_LIMIT_MB: optionalNumber(64, 4_194_304, true),
    TENANTDB_SWARM_CPU_RESERVATION: optionalNumber(0.01, 1024),
    TENANTDB_SWARM_MEMORY_RESERVATION_MB: optionalNumber(16, 4_194_304, true),
    TENANTDB_SWARM_VOLUME_DRIVER: z.string().min(1).default('local'),
    TENANTDB_SWARM_POSTGRES_UID: env
      .int(70, 1, 2_147_483_647)
      .describe("the image's postgres uid (owns the TLS key file): 70 in -alpine images, 999 in Debian ones"),
    TENANTDB_SWARM_VOLUME_REMOVAL: z
      .enum(['delete', 'keep'])
      .default('delete')
      .describe('what removing a server does to its data volume'),
    TENANTDB_SWARM_RESTART_DELAY_MS: env.int(seconds(5), 100, seconds(600)),
    TENANTDB_SWARM_START_TIMEOUT_MS: env
      .int(seconds(300), 1000)
      .describe('how long a new service may take to get a running task (image pulls included)'),

    // --- kubernetes driver (docs/drivers.md) ---
    TENANTDB_K8S_NAMESPACE: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/)
      .default('tenantdb-servers'),
    TENANTDB_K8S_KUBECONFIG: z
      .string()
      .min(1)
      .default('in-cluster')
      .describe('in-cluster (the pod service account) or the path of a kubeconfig file'),
    TENANTDB_K8S_CONTEXT: optionalText().describe('kubeconfig context (default: its current context)'),
    TENANTDB_K8S_MODE: z
      .enum(['statefulset', 'cnpg'])
      .default('statefulset')
      .describe('statefulset: StatefulSet + headless Service + Secret; cnpg: a CloudNativePG Cluster'),
    TENANTDB_K8S_IMAGE: optionalText().describe(
      'default postgres:15-alpine (statefulset) or ghcr.io/cloudnative-pg/postgresql:15 (cnpg)',
    ),
    TENANTDB_K8S_STORAGE_CLASS: optionalText().describe("the cluster's default class when unset"),
    TENANTDB_K8S_STORAGE_SIZE_GB: env.int(10, 1, 65_536).describe('for servers whose row sets no size'),
    TENANTDB_K8S_RUN_AS_USER: env
      .int(70, 1, 2_147_483_647)
      .describe("statefulset mode: the image's postgres uid, 70 in -alpine images, 999 in Debian ones"),
    TENANTDB_K8S_CPU_LIMIT: optionalNumber(0.01, 1024),
    TENANTDB_K8S_MEMORY_LIMIT_MB: optionalNumber(64, 4_194_304, true),
    TENANTDB_K8S_CPU_REQUEST: optionalNumber(0.01, 1024),
    TENANTDB_K8S_MEMORY_REQUEST_MB: optionalNumber(16, 4_194_304, true),
    TENANTDB_K8S_NODE_SELECTOR: labelMap.describe('label=value,… nodes servers may run on'),
    TENANTDB_K8S_VOLUME_REMOVAL: z
      .enum(['delete', 'keep'])
      .default('delete')
      .describe('what removing a server does to its PersistentVolumeClaim (statefulset mode)'),
  })
  .superRefine(
    (c, ctx) => {
      if (c.TENANTDB_SWARM_PUBLISH_MODE === 'none' && !c.TENANTDB_SWARM_NETWORK) {
        ctx.addIssue({
          code: 'custom',
          path: ['TENANTDB_SWARM_NETWORK'],
          message: 'publish mode none needs the overlay network the worker reaches servers on',
        });
      }
    },
    // Checked even when other variables are wrong, so that every problem is reported at once.
    { when: () => true },
  )
  .superRefine(checkBackupStore, { when: () => true });
export type WorkerConfig = z.output<typeof WorkerConfig>;

export const loadConfig = (source?: Record<string, string | undefined>) => parseConfig(WorkerConfig, source);

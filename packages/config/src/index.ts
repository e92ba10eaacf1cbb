// One way to read configuration: a zod schema per process, parsed once at boot, every problem
// reported together, the result frozen. Nothing else in the tree reads process.env.
import { isIP } from 'node:net';
import { z } from 'zod';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export function parseConfig<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined> = process.env,
): Readonly<z.output<S>> {
  const result = schema.safeParse(env);
  if (!result.success) {
    // Name the variable and the problem, never the value: values may be secrets.
    throw new ConfigError(
      result.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`),
    );
  }
  return deepFreeze(result.data) as Readonly<z.output<S>>;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !ArrayBuffer.isView(value) && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** Env vars are strings; these turn them into what the schema means. */
export const env = {
  port: (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback),
  int: (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
    z.coerce.number().int().min(min).max(max).default(fallback),
  bool: (fallback: boolean) =>
    z
      .enum(['true', 'false', '1', '0'])
      .default(fallback ? 'true' : 'false')
      .transform((v) => v === 'true' || v === '1'),
  url: () => z.string().url(),
  /** A bearer token: long enough to resist guessing. */
  token: () => z.string().min(24, 'must be at least 24 characters').max(512),
  logLevel: () => z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
};

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * Which proxies' X-Forwarded-For is believed when deciding a caller's address (for the limits on
 * failed authentication): empty (the default) believes none, so the address is the TCP peer;
 * otherwise a comma-separated list of the proxies' addresses, CIDRs or the names loopback /
 * linklocal / uniquelocal (as Fastify's trustProxy takes them). The client address is then the
 * last X-Forwarded-For entry that is not a trusted proxy.
 */
export const trustProxy = z
  .string()
  .default('')
  .transform((raw, ctx): false | string[] => {
    const value = raw.trim();
    if (value === '') return false;
    const entries = value
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
    for (const entry of entries) {
      const [address, bits, extra] = entry.split('/');
      const family = isIP(address ?? '');
      const okBits =
        bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 6 ? 128 : 32));
      if (!PROXY_NAMES.has(entry) && (family === 0 || !okBits || extra !== undefined)) {
        ctx.addIssue({
          code: 'custom',
          message: 'addresses or CIDRs (or loopback, linklocal, uniquelocal), comma-separated',
        });
        return z.NEVER;
      }
    }
    return entries;
  });

/** An optional file path: unset and empty (`X=` in an env file) both mean "not set". */
const optionalPath = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

/**
 * The settings every HTTP API process reads the same way: how many requests a token may make, how
 * many failed authentications a client address may make, where those counters live, and which
 * proxies to believe about a client's address.
 */
export const httpEdgeSettings = {
  TENANTDB_RATE_LIMIT_PER_MINUTE: env.int(6000, 1).describe('requests per minute per token'),
  TENANTDB_AUTH_FAILURES_PER_MINUTE: env
    .int(30, 1)
    .describe(
      'failed authentications (401/403) per minute per client address; then 429 until the minute ends',
    ),
  TENANTDB_RATE_LIMIT_STORE: z
    .enum(['redis', 'memory'])
    .default('redis')
    .describe(
      'where rate-limit counters live: redis (REDIS_URL, shared by every replica) or memory (per replica)',
    ),
  TENANTDB_RATE_LIMIT_REDIS_TIMEOUT_MS: env
    .int(500, 1)
    .describe(
      'how long a request waits for its rate-limit counter in Redis before it is let through unlimited (fail open)',
    ),
  TENANTDB_TRUST_PROXY: trustProxy.describe(
    'proxies whose X-Forwarded-For is believed (addresses/CIDRs); empty believes none',
  ),
  TENANTDB_HTTPS_CERT_FILE: optionalPath.describe(
    'serve HTTPS with this PEM certificate (chain); with TENANTDB_HTTPS_KEY_FILE. Unset: plain HTTP',
  ),
  TENANTDB_HTTPS_KEY_FILE: optionalPath.describe('the PEM private key of TENANTDB_HTTPS_CERT_FILE'),
};

/**
 * TLS on the admin connections to pool servers (database-service and database-worker alike):
 * `prefer` (the default) verifies a server tenantdb issued a certificate to against the fleet CA
 * (verify-full) and connects in plain text to one without (created before TLS, or registered from
 * outside); `require` also encrypts to those, unverified (libpq's sslmode=require); `off` never
 * uses TLS.
 */
export const poolAdminTls = z
  .enum(['off', 'prefer', 'require'])
  .default('prefer')
  .describe(
    'admin connections to pool servers: prefer (verify-full with the fleet CA where the server has its certificate, plain otherwise), require (TLS to every server; unverified without a fleet certificate), off',
  );

/**
 * Postgres settings for servers tenantdb provisions: `name=value,name=value` (e.g.
 * `shared_buffers=256MB,log_min_duration_statement=500`). Names are checked here; drivers pass
 * them as `postgres -c` arguments or a conf file, never through a shell.
 */
export const postgresSettings = z
  .string()
  .default('')
  .transform((raw, ctx) => {
    const settings: Record<string, string> = {};
    for (const part of raw
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean)) {
      const eq = part.indexOf('=');
      const name = eq > 0 ? part.slice(0, eq).trim() : '';
      const value = eq > 0 ? part.slice(eq + 1).trim() : '';
      if (!/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$/.test(name) || value === '' || /[\r\n\0]/.test(value)) {
        ctx.addIssue({ code: 'custom', message: 'each entry must be name=value (a Postgres setting name)' });
        return z.NEVER;
      }
      settings[name] = value;
    }
    return settings;
  });

/**
 * Encryption keys for secrets at rest: `TENANTDB_ENCRYPTION_KEYS=k2:<base64 32 bytes>,k1:<…>`.
 * The first key encrypts; every key listed can decrypt, so keys rotate without downtime.
 */
export const encryptionKeys = z
  .string()
  .min(1)
  .transform((raw, ctx) => {
    const keys: { id: string; key: Buffer }[] = [];
    for (const part of raw.split(',').map((p) => p.trim())) {
      const [id, b64] = part.split(':', 2);
      const key = b64 ? Buffer.from(b64, 'base64') : Buffer.alloc(0);
      if (!id || !/^[A-Za-z0-9_-]{1,32}$/.test(id) || key.length !== 32) {
        ctx.addIssue({
          code: 'custom',
          message:
            'each entry must be <key-id>:<base64 of 32 random bytes> (generate: openssl rand -base64 32)',
        });
        return z.NEVER;
      }
      if (keys.some((k) => k.id === id)) {
        ctx.addIssue({ code: 'custom', message: `key id ${id} listed twice` });
        return z.NEVER;
      }
      keys.push({ id, key });
    }
    return keys;
  });

/**
 * Where backups are kept (database-worker writes them, database-service checks the store is up):
 * `none` (no backups), `dir` (a directory; `pnpm dev` uses its state directory) or `s3` (any
 * S3-compatible storage). Credentials come from the variable or from the file its `_FILE` twin
 * names (a mounted secret); unset, the AWS SDK's default chain (environment, instance role) is
 * used. The files are read by @tenantdb/backups when the store is made, not here.
 */
export const backupStoreSettings = {
  TENANTDB_BACKUP_STORE: z
    .enum(['none', 'dir', 's3'])
    .default('none')
    .describe('none (backups off), dir (TENANTDB_BACKUP_DIR) or s3 (TENANTDB_BACKUP_S3_*)'),
  TENANTDB_BACKUP_DIR: optionalPath.describe('dir store: the directory backups are kept in'),
  TENANTDB_BACKUP_S3_BUCKET: optionalPath.describe('s3 store: the bucket'),
  TENANTDB_BACKUP_S3_PREFIX: z
    .string()
    .default('')
    .refine((v) => v === '' || /^[A-Za-z0-9._/-]*\/$/.test(v), {
      message: 'letters, digits, . _ - / and ending in /',
    })
    .describe('s3 store: prepended to every object key, e.g. tenantdb/'),
  TENANTDB_BACKUP_S3_REGION: z.string().min(1).default('us-east-1').describe('s3 store: the region'),
  TENANTDB_BACKUP_S3_ENDPOINT: optionalPath.describe(
    "s3 store: the endpoint URL of S3-compatible storage (unset: AWS's own for the region)",
  ),
  TENANTDB_BACKUP_S3_FORCE_PATH_STYLE: env
    .bool(false)
    .describe('s3 store: bucket in the path (most S3-compatible servers), not the host name'),
  TENANTDB_BACKUP_S3_ACCESS_KEY_ID: optionalPath.describe('s3 store: access key id'),
  TENANTDB_BACKUP_S3_ACCESS_KEY_ID_FILE: optionalPath.describe('s3 store: a file holding the access key id'),
  TENANTDB_BACKUP_S3_SECRET_ACCESS_KEY: optionalPath.describe('s3 store: secret access key'),
  TENANTDB_BACKUP_S3_SECRET_ACCESS_KEY_FILE: optionalPath.describe(
    's3 store: a file holding the secret access key',
  ),
};

type BackupStoreSettings = {
  [K in keyof typeof backupStoreSettings]: z.output<(typeof backupStoreSettings)[K]>;
};

/** superRefine: the store named has what it needs; a credential is given one way only. */
export function checkBackupStore(c: BackupStoreSettings, ctx: z.RefinementCtx): void {
  const need = (name: keyof BackupStoreSettings, why: string) => {
    if (!c[name]) ctx.addIssue({ code: 'custom', path: [name], message: why });
  };
  if (c.TENANTDB_BACKUP_STORE === 'dir') need('TENANTDB_BACKUP_DIR', 'the dir store needs a directory');
  if (c.TENANTDB_BACKUP_STORE === 's3') need('TENANTDB_BACKUP_S3_BUCKET', 'the s3 store needs a bucket');
  for (const name of ['TENANTDB_BACKUP_S3_ACCESS_KEY_ID', 'TENANTDB_BACKUP_S3_SECRET_ACCESS_KEY'] as const) {
    if (c[name] && c[`${name}_FILE`])
      ctx.addIssue({ code: 'custom', path: [name], message: `set ${name} or ${name}_FILE, not both` });
  }
}

/**
 * A check for a config schema's superRefine: the named secrets must all differ. One value serving
 * as two tokens gives whoever holds the weaker one the stronger one's scope (an allocate token
 * that is also the admin token is an admin token). Names the variables, never the value.
 */
export function distinctSecrets<K extends string>(names: readonly K[]) {
  return (config: Partial<Record<K, unknown>>, ctx: z.RefinementCtx): void => {
    names.forEach((name, i) => {
      const twin = names
        .slice(0, i)
        .find((other) => config[other] !== undefined && config[other] === config[name]);
      if (twin) {
        ctx.addIssue({ code: 'custom', path: [name], message: `must differ from ${twin}` });
      }
    });
  };
}

export { z };

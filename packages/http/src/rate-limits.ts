// The limits every HTTP process applies: requests per minute per token (per client address on
// unauthenticated routes), and failed authentications per minute per client address. Counters
// live in Redis when a store is given (one budget across replicas; fail open while Redis cannot
// answer), in memory otherwise.
import { readFileSync } from 'node:fs';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { AuthFailureLimiter } from './auth';
import { HttpError } from './errors';

const DEFAULT_AUTH_FAILURES_PER_MINUTE = 30;
const MINUTE_MS = 60_000;

export interface RateLimitOptions {
  rateLimitPerMinute: number;
  /** Failed authentications (401/403) per minute per client address before 429 (default 30). */
  authFailuresPerMinute?: number;
  /**
   * Where the counters live: Redis shares them between replicas (keys under `namespace`); without
   * it each replica counts on its own. While Redis cannot answer, requests are not limited (the
   * limits fail open; /readyz reports Redis down) rather than refused. The app owns the
   * connection: it is closed with the app.
   */
  rateLimitStore?: { redis: Redis; namespace: string };
}

/** The settings of packages/config's httpEdgeSettings, as a service parsed them. */
export interface HttpEdgeConfig {
  TENANTDB_RATE_LIMIT_PER_MINUTE: number;
  TENANTDB_AUTH_FAILURES_PER_MINUTE: number;
  TENANTDB_RATE_LIMIT_STORE: 'redis' | 'memory';
  TENANTDB_RATE_LIMIT_REDIS_TIMEOUT_MS: number;
  TENANTDB_TRUST_PROXY: false | string[];
  TENANTDB_HTTPS_CERT_FILE?: string | undefined;
  TENANTDB_HTTPS_KEY_FILE?: string | undefined;
}

/** The certificate and key to serve HTTPS with, read at boot; undefined for plain HTTP. */
function httpsFiles(config: HttpEdgeConfig): { cert: string; key: string } | undefined {
  const { TENANTDB_HTTPS_CERT_FILE: certFile, TENANTDB_HTTPS_KEY_FILE: keyFile } = config;
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) {
    throw new Error('TENANTDB_HTTPS_CERT_FILE and TENANTDB_HTTPS_KEY_FILE are set together or not at all');
  }
  const read = (name: string, path: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(`${name}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  return { cert: read('TENANTDB_HTTPS_CERT_FILE', certFile), key: read('TENANTDB_HTTPS_KEY_FILE', keyFile) };
}

/** A service's limits, proxy trust and HTTPS from its config, counting in its queues' Redis. */
export function edgeOptions(
  config: HttpEdgeConfig,
  redis: { connection: Redis; prefix: string },
): RateLimitOptions & { trustProxy: false | string[]; https?: { cert: string; key: string } } {
  const https = httpsFiles(config);
  return {
    ...(https ? { https } : {}),
    rateLimitPerMinute: config.TENANTDB_RATE_LIMIT_PER_MINUTE,
    authFailuresPerMinute: config.TENANTDB_AUTH_FAILURES_PER_MINUTE,
    trustProxy: config.TENANTDB_TRUST_PROXY,
    // Its own connection with a short command deadline: a slow Redis cannot hold every request.
    // The deadline is a timer in this process, so an event loop stalled past it also lets a
    // request through: a busy host should raise it rather than count less exactly.
    ...(config.TENANTDB_RATE_LIMIT_STORE === 'redis'
      ? {
          rateLimitStore: {
            redis: redis.connection.duplicate({
              commandTimeout: config.TENANTDB_RATE_LIMIT_REDIS_TIMEOUT_MS,
            }),
            namespace: `${redis.prefix}:rate-limit:`,
          },
        }
      : {}),
  };
}

/**
 * Registers the per-token limit (a route hook, so it runs after authentication and keys on the
 * token's name) and answers the failed-authentication limiter for registerAuth.
 */
export async function registerRateLimits(
  app: FastifyInstance,
  opts: RateLimitOptions,
): Promise<AuthFailureLimiter> {
  await app.register(rateLimit, {
    global: true,
    max: opts.rateLimitPerMinute,
    timeWindow: MINUTE_MS,
    keyGenerator: (request) => (request.principal ? `token:${request.principal.name}` : `ip:${request.ip}`),
    errorResponseBuilder: (_request, ctx) =>
      new HttpError(429, `rate limit of ${ctx.max} requests per minute exceeded; retry in ${ctx.after}`),
    ...(opts.rateLimitStore
      ? { redis: opts.rateLimitStore.redis, nameSpace: opts.rateLimitStore.namespace, skipOnError: true }
      : {}),
  });
  if (opts.rateLimitStore) {
    const { redis } = opts.rateLimitStore;
    redis.on('error', () => {}); // Redis down is reported by /readyz; the limits fail open
    app.addHook('onClose', async () => redis.disconnect());
  }
  const authFailures = app.createRateLimit({
    max: opts.authFailuresPerMinute ?? DEFAULT_AUTH_FAILURES_PER_MINUTE,
    timeWindow: MINUTE_MS,
    keyGenerator: (request) => `auth-failures:${request.ip}`,
  });
  return {
    async blockedFor(request) {
      const state = await authFailures(request, { increment: false });
      return !state.isAllowed && state.remaining === 0 ? Math.max(1, state.ttlInSeconds) : 0;
    },
    async count(request) {
      const state = await authFailures(request);
      if (!state.isAllowed && state.remaining === 0 && state.ttlInSeconds * 1000 >= MINUTE_MS - 1_000) {
        request.log.warn({ client: request.ip }, 'failed authentications over the limit: 429 for a minute');
      }
    },
  };
}

// What every tenantdb HTTP process shares: zod validation and serialization, the one error shape,
// request ids, bearer auth with scopes, per-token rate limits, request metrics, /healthz,
// /readyz, /metrics, and the OpenAPI document at /openapi.json with its UI at /docs.
import { randomUUID } from 'node:crypto';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { ErrorResponse } from '@tenantdb/contracts';
import { Histogram, type Logger, type Registry } from '@tenantdb/observability';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify';
import type { FastifySerializerCompiler } from 'fastify/types/schema';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  ResponseSerializationError,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { ZodType } from 'zod';
import { registerAuth, type TokenGrant, type TokenLookup } from './auth';
import { HttpError, isDependencyUnavailable, isRefusedByDatabase, reasonPhrase } from './errors';
import { type RateLimitOptions, registerRateLimits } from './rate-limits';

export type HttpApp = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  ZodTypeProvider
>;

/** Requests per minute per token, failed authentications per address, and where they are counted. */
export interface HttpAppOptions extends RateLimitOptions {
  name: string;
  version: string;
  description: string;
  logger: Logger;
  registry: Registry;
  tokens: readonly TokenGrant[];
  /** Where tokens the configured ones do not match are looked up (API keys, OIDC), in order. */
  tokenLookups?: readonly TokenLookup[];
  /** Proxies whose X-Forwarded-For is believed for the client address (default: none). */
  trustProxy?: false | string[];
  /** Serve HTTPS with this PEM certificate and key (plain HTTP without). */
  https?: { cert: string; key: string };
  bodyLimitBytes: number;
  /** Named dependency checks for /readyz; each resolves true when the dependency answers. */
  readiness: Record<string, () => Promise<boolean>>;
  /**
   * How long a client may take to send a whole request, headers and body (default 30 s): a slow or
   * stalled sender is answered 408 and its socket closed instead of holding it for ever.
   */
  requestTimeoutMs?: number;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/**
 * Responses are checked against their schema (unknown keys stripped, every check run) and then
 * stringified. The type provider's own serializer does this through zod's encode path, which costs
 * several times a plain parse (the largest share of a 100-pool page's CPU): it exists for codecs,
 * and no response schema has one. One that adds a codec (or a transform) to a response schema
 * must go back to `serializerCompiler` from fastify-type-provider-zod.
 */
const responseSerializer: FastifySerializerCompiler<ZodType | { properties: ZodType }> = ({
  schema: given,
  method,
  url,
}) => {
  // As the type provider resolves it: the schema itself, or wrapped in `properties`.
  const schema = 'safeParse' in given ? given : given.properties;
  return (data) => {
    const result = schema.safeParse(data);
    if (!result.success) throw new ResponseSerializationError(method, url, { cause: result.error });
    return JSON.stringify(result.data);
  };
};

/** Fastify's server options: `https` (Node's TLS server options) when serving HTTPS, `http` otherwise. */
function serverOptions(
  timeouts: { headersTimeout: number; connectionsCheckingInterval: number },
  https: HttpAppOptions['https'],
):
  | { http: typeof timeouts }
  | { https: typeof timeouts & { cert: string; key: string; minVersion: 'TLSv1.2' } } {
  return https ? { https: { ...timeouts, ...https, minVersion: 'TLSv1.2' } } : { http: timeouts };
}

export async function createHttpApp(opts: HttpAppOptions): Promise<HttpApp> {
  const requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const app = Fastify({
    loggerInstance: opts.logger,
    // One line per request is written by the onResponse hook below.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    bodyLimit: opts.bodyLimitBytes,
    trustProxy: opts.trustProxy ?? false,
    // Node's own defaults leave a request without a deadline in Fastify (requestTimeout 0) and
    // look for expired ones only every 30 s; headers count against the same deadline.
    requestTimeout: requestTimeoutMs,
    ...serverOptions(
      {
        headersTimeout: requestTimeoutMs,
        connectionsCheckingInterval: Math.min(1_000, requestTimeoutMs),
      },
      opts.https,
    ),
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(given) ? given : randomUUID();
    },
    // Errors Fastify raises before routing (a malformed percent-encoding, a path parameter over the
    // router's limit) get the one error shape with the request id too, and do not echo the URL.
    frameworkErrors: (err, request, reply) => {
      const status = err.statusCode ?? 400;
      const message =
        err.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? 'a path parameter is too long'
          : err.code === 'FST_ERR_BAD_URL'
            ? 'the URL is not validly encoded'
            : reasonPhrase(status);
      // Typed for every route's replies; this one answers before any route is chosen.
      (reply as FastifyReply).status(status).send(errorBody(status, message, request.id));
    },
  }).withTypeProvider<ZodTypeProvider>() as unknown as HttpApp;

  // Bodies are JSON only: Fastify's default text/plain parser would hand a string to validation
  // (400) instead of refusing the media type (415).
  app.removeContentTypeParser('text/plain');
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(responseSerializer);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => {
    reply
      .status(404)
      .send(errorBody(404, `no route for ${request.method} ${request.url.split('?')[0]}`, request.id));
  });

  // Scoped routes are documented as needing the bearer token (before swagger reads the route).
  app.addHook('onRoute', (route) => {
    if (route.config?.scope) {
      route.schema = { ...route.schema, security: [{ bearer: [] }] } as typeof route.schema;
      const responses = (route.schema as { response?: Record<number, unknown> }).response ?? {};
      for (const code of [400, 401, 403, 429, 500, 503]) responses[code] ??= ErrorResponse;
      (route.schema as { response?: Record<number, unknown> }).response = responses;
    }
  });

  await app.register(swagger, {
    openapi: {
      info: { title: opts.name, version: opts.version, description: opts.description },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
    transform: jsonSchemaTransform,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  const authFailures = await registerRateLimits(app, opts);
  registerAuth(app, opts.tokens, authFailures, opts.tokenLookups);

  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['method', 'route', 'status_code'],
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [opts.registry],
  });
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    duration.observe(
      { method: request.method, route, status_code: reply.statusCode },
      reply.elapsedTime / 1000,
    );
    if (route !== '/metrics' && route !== '/healthz' && route !== '/readyz') {
      request.log.info(
        {
          method: request.method,
          route,
          status: reply.statusCode,
          ms: Math.round(reply.elapsedTime),
          token: request.principal?.name,
        },
        'request',
      );
    }
  });

  const open = { config: { rateLimit: false }, schema: { hide: true } } as const;
  app.get('/healthz', open, async () => ({ status: 'ok' }));
  app.get('/readyz', open, async (_request, reply) => {
    const entries = await Promise.all(
      Object.entries(opts.readiness).map(async ([name, check]) => {
        const ok = await withDeadline(check(), 2_000).catch(() => false);
        return [name, ok ? 'ok' : 'unavailable'] as const;
      }),
    );
    const ready = entries.every(([, state]) => state === 'ok');
    reply
      .status(ready ? 200 : 503)
      .send({ status: ready ? 'ready' : 'not_ready', checks: Object.fromEntries(entries) });
  });
  app.get('/metrics', open, async (_request, reply) => {
    reply.type(opts.registry.contentType).send(await opts.registry.metrics());
  });
  app.get('/openapi.json', open, async () => app.swagger());

  return app;
}

function errorBody(statusCode: number, message: string, requestId: string): ErrorResponse {
  return { statusCode, error: reasonPhrase(statusCode), message, requestId };
}

function errorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  let status = 500;
  let message = 'internal error';
  if (hasZodFastifySchemaValidationErrors(err)) {
    status = 400;
    message = err.validation
      .slice(0, 10)
      .map((v) => describeIssue(err.validationContext ?? 'request', v))
      .join('; ');
  } else if (err instanceof HttpError) {
    status = err.statusCode;
    message = err.message;
    reply.headers(err.headers);
  } else if (isDependencyUnavailable(err)) {
    status = 503;
    message = 'a dependency (catalog database or job queue) is unavailable or overloaded; retry';
    reply.header('retry-after', '2');
  } else if (isRefusedByDatabase(err)) {
    status = 400;
    message = 'a value in the request is out of range or not accepted';
    // Which check it was, for whoever tightens validation; not the message, which holds the value.
    const { code, constraint, table, column } = err as {
      code?: string;
      constraint?: string;
      table?: string;
      column?: string;
    };
    request.log.warn(
      { code, constraint, table, column },
      'the catalog refused a value validation let through',
    );
  } else if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    // Fastify's own client errors: malformed JSON, body too large, unsupported media type.
    status = err.statusCode;
    message = err.message;
  }
  if (status >= 500) request.log.error({ err }, 'request failed');
  reply.status(status).send(errorBody(status, message, request.id));
}

/** Field names that may be repeated back; any other name the caller sent is not echoed. */
const ECHOABLE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const echoable = (name: string) => (ECHOABLE_NAME.test(name) ? name : '<invalid name>');

function describeIssue(
  context: string,
  issue: { instancePath: string; keyword: string; message?: string; params: Record<string, unknown> },
): string {
  // Paths hold record keys and unknown keys hold names: both are caller input.
  const path = (issue.instancePath || '')
    .split('/')
    .map((segment) => (segment === '' ? segment : echoable(segment)))
    .join('/');
  let message = issue.message ?? 'invalid';
  if (issue.keyword === 'unrecognized_keys' && Array.isArray(issue.params.keys)) {
    const names = issue.params.keys.map((k) => `"${echoable(String(k))}"`);
    message = `unknown field${names.length === 1 ? '' : 's'} ${names.join(', ')}`;
  }
  return `${context}${path}: ${message}`.slice(0, 200);
}

function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('deadline')), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

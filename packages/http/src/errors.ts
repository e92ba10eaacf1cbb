// The few error classes every route may throw; one handler (app-base.ts) maps them to HTTP.
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class BadRequestError extends HttpError {
  constructor(message: string) {
    super(400, message);
  }
}
export class UnauthorizedError extends HttpError {
  constructor(message = 'missing or unknown bearer token') {
    super(401, message, { 'www-authenticate': 'Bearer' });
  }
}
export class ForbiddenError extends HttpError {
  constructor(message = 'token lacks the scope this route needs') {
    super(403, message);
  }
}
export class NotFoundError extends HttpError {
  constructor(message: string) {
    super(404, message);
  }
}
export class ConflictError extends HttpError {
  constructor(message: string) {
    super(409, message);
  }
}
export class UnprocessableError extends HttpError {
  constructor(message: string) {
    super(422, message);
  }
}
export class UnavailableError extends HttpError {
  constructor(message: string, retryAfterSeconds = 5) {
    super(503, message, { 'retry-after': String(retryAfterSeconds) });
  }
}

/**
 * A dependency could not serve the request: the catalog (no pool connection within the acquire
 * timeout, a refused or dropped connection, a server shutting down) or the job queue (Redis down:
 * @tenantdb/jobs throws code EQUEUE_UNAVAILABLE). Transient, so 503 + Retry-After.
 */
export function isDependencyUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = String((err as { code?: unknown }).code ?? '');
  return (
    code === 'EQUEUE_UNAVAILABLE' ||
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', '57P01', '57P02', '57P03'].includes(code) ||
    code.startsWith('08') ||
    /^(timeout exceeded when trying to connect|Connection terminated)/.test(err.message)
  );
}

/**
 * The database refused a value the request carried: a data exception (class 22: a NUL byte in
 * text, a number out of a column's range) or an integrity constraint (class 23: a CHECK, NOT NULL,
 * a unique index) that validation should have caught and did not. The caller sent it, so 400 —
 * with a message of our own, never the database's (its detail repeats the value).
 */
export function isRefusedByDatabase(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return /^2[23][0-9A-Z]{3}$/.test(String((err as { code?: unknown }).code ?? ''));
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function reasonPhrase(statusCode: number): string {
  return REASONS[statusCode] ?? (statusCode >= 500 ? 'Internal Server Error' : 'Bad Request');
}

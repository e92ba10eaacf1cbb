// A typed client for database-service's allocation routes, built from the contracts in this
// package: requests are checked before they are sent, answers are parsed against the response
// schemas. Every call it makes is idempotent on the server (allocate per instance_id, release,
// reads), so it retries network errors, timeouts and 5xx with backoff; a 4xx is an answer, never
// retried. It logs nothing: answers carry passwords.
import type { z } from 'zod';
import { IntrospectKeyAnswer } from './api-keys';
import { Backup, BackupList, Restore, RestoreRequest } from './backups';
import { ErrorResponse, uuid } from './common';
import {
  Allocated,
  AllocateRequest,
  Allocation,
  AllocationCredentials,
  PlanList,
  Provisioning,
  Released,
} from './database-service';
import { PlanChangeStarted } from './moves';
import { AllocationUsage } from './usage';

export interface DatabaseServiceClientOptions {
  /** e.g. http://127.0.0.1:8005 */
  baseUrl: string;
  /** A bearer token with the `allocate` scope. */
  token: string;
  /** A bearer token with the `admin` scope, for the admin methods (backups and restores; none: they throw) */
  adminToken?: string | undefined;
  /** Deadline of one attempt (connect, request and the whole answer). */
  timeoutMs?: number;
  /** Further attempts after a network error, a timeout or a 5xx. */
  retries?: number;
  /** First backoff; it doubles per retry (with jitter). A 503's Retry-After is honoured up to maxBackoffMs. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Observes every attempt (for metrics): the operation, its outcome and its duration. */
  onAttempt?: (attempt: { operation: Operation; outcome: AttemptOutcome; seconds: number }) => void;
  /** The fetch to send with (e.g. one trusting a private CA for an https:// baseUrl); global fetch by default. */
  fetch?: typeof globalThis.fetch;
}

export type Operation =
  | 'allocate'
  | 'get_allocation'
  | 'read_credentials'
  | 'release'
  | 'introspect_key'
  | 'list_plans'
  | 'suspend'
  | 'resume'
  | 'start_backup'
  | 'get_backup'
  | 'list_backups'
  | 'restore_backup'
  | 'get_restore'
  | 'change_plan';
export type AttemptOutcome = 'ok' | 'client_error' | 'server_error' | 'unreachable';

/** database-service answered with an error status (after the retries, for a 5xx). */
export class DatabaseServiceError extends Error {
  constructor(
    readonly operation: Operation,
    readonly status: number,
    readonly body: ErrorResponse | undefined,
    /** From the Retry-After header (503, 429), in seconds. */
    readonly retryAfterSeconds: number | undefined,
  ) {
    super(`database-service answered ${status} to ${operation}${body ? `: ${body.message}` : ''}`);
    this.name = 'DatabaseServiceError';
  }

  /** Worth asking again later: the server was unavailable or asked us to slow down. */
  get transient(): boolean {
    return this.status >= 500 || this.status === 429;
  }
}

/** No answer from database-service: refused, reset, unresolvable, or not within the timeout. */
export class DatabaseServiceUnreachableError extends Error {
  constructor(
    readonly operation: Operation,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`database-service unreachable (${operation}): ${reason}`, options);
    this.name = 'DatabaseServiceUnreachableError';
  }
  readonly transient = true;
}

/** An answer that does not match the contract: a deployment mismatch, not worth retrying. */
export class DatabaseServiceProtocolError extends Error {
  constructor(operation: Operation, status: number) {
    super(
      `database-service answered ${operation} with ${status} and a body that does not match the contract`,
    );
    this.name = 'DatabaseServiceProtocolError';
  }
}

export type DatabaseServiceClient = ReturnType<typeof createDatabaseServiceClient>;

const NotFound = Symbol('not found');

export function createDatabaseServiceClient(opts: DatabaseServiceClientOptions) {
  const base = opts.baseUrl.replace(/\/+$/, '');
  const defaultTimeoutMs = opts.timeoutMs ?? 15_000;
  const defaultRetries = opts.retries ?? 2;
  const backoffMs = opts.backoffMs ?? 250;
  const maxBackoffMs = opts.maxBackoffMs ?? 5_000;
  const send = opts.fetch ?? globalThis.fetch;

  function adminToken(): string {
    if (!opts.adminToken) throw new Error('no admin token for database-service is configured');
    return opts.adminToken;
  }

  function backoff(retry: number, retryAfterSeconds?: number): number {
    const exponential = Math.min(maxBackoffMs, backoffMs * 2 ** retry);
    const jittered = exponential * (0.5 + Math.random() / 2);
    return retryAfterSeconds === undefined ? jittered : Math.min(maxBackoffMs, retryAfterSeconds * 1000);
  }

  async function call<T>(
    operation: Operation,
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body: unknown,
    answers: Record<number, z.ZodType<T>> | Record<number, z.ZodType>,
    opts2: { notFoundIsAnswer?: boolean; timeoutMs?: number; retries?: number; token?: string } = {},
  ): Promise<T | typeof NotFound> {
    const retries = opts2.retries ?? defaultRetries;
    const timeoutMs = opts2.timeoutMs ?? defaultTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      const started = performance.now();
      const seconds = () => (performance.now() - started) / 1000;
      let status: number;
      let text: string;
      let retryAfter: number | undefined;
      try {
        const response = await send(`${base}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${opts2.token ?? opts.token}`,
            accept: 'application/json',
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          redirect: 'error',
          signal: AbortSignal.timeout(timeoutMs),
        });
        status = response.status;
        retryAfter = parseRetryAfter(response.headers.get('retry-after'));
        text = await response.text();
      } catch (err) {
        opts.onAttempt?.({ operation, outcome: 'unreachable', seconds: seconds() });
        const failure = new DatabaseServiceUnreachableError(operation, describeFetchError(err, timeoutMs), {
          cause: err,
        });
        if (attempt >= retries) throw failure;
        await sleep(backoff(attempt));
        continue;
      }

      if (status >= 500) {
        opts.onAttempt?.({ operation, outcome: 'server_error', seconds: seconds() });
        if (attempt >= retries)
          throw new DatabaseServiceError(operation, status, parseError(text), retryAfter);
        await sleep(backoff(attempt, retryAfter));
        continue;
      }
      const schema = (answers as Record<number, z.ZodType>)[status];
      if (schema) {
        opts.onAttempt?.({ operation, outcome: 'ok', seconds: seconds() });
        const parsed = schema.safeParse(parseJson(text));
        if (!parsed.success) throw new DatabaseServiceProtocolError(operation, status);
        return parsed.data as T;
      }
      opts.onAttempt?.({ operation, outcome: 'client_error', seconds: seconds() });
      if (status === 404 && opts2.notFoundIsAnswer) return NotFound;
      throw new DatabaseServiceError(operation, status, parseError(text), retryAfter);
    }
  }

  return {
    /** 200 allocated (credentials) or 202 provisioning (ask again after retry_after seconds). */
    async allocate(request: AllocateRequest): Promise<Allocated | Provisioning> {
      const body = AllocateRequest.parse(request);
      const answer = await call<Allocated | Provisioning>(
        'allocate',
        'POST',
        '/api/database/allocate',
        body,
        {
          200: Allocated,
          202: Provisioning,
        },
      );
      return answer as Allocated | Provisioning;
    },

    /**
     * The plan names database-service knows (allocate scope). A caller on a request path passes a
     * short deadline and no retries: it must not hold its own caller for long.
     */
    async listPlans(opts2: { timeoutMs?: number; retries?: number } = {}): Promise<PlanList> {
      const answer = await call<PlanList>(
        'list_plans',
        'GET',
        '/api/database/plans',
        undefined,
        { 200: PlanList },
        opts2,
      );
      return answer as PlanList;
    },

    /** The newest allocation of an instance in any status, or null when it never had one. */
    async getAllocation(instanceId: string): Promise<Allocation | null> {
      const id = uuid.parse(instanceId);
      const answer = await call<Allocation>(
        'get_allocation',
        'GET',
        `/api/database/allocations/${id}`,
        undefined,
        {
          200: Allocation,
        },
        { notFoundIsAnswer: true },
      );
      return answer === NotFound ? null : (answer as Allocation);
    },

    /**
     * The credentials of the instance's ready allocation, read again (database-service audits the
     * read). A DatabaseServiceError with status 404 when it has no live allocation, 409 while it
     * is being created or released.
     */
    async credentials(instanceId: string): Promise<AllocationCredentials> {
      const id = uuid.parse(instanceId);
      const answer = await call<AllocationCredentials>(
        'read_credentials',
        'GET',
        `/api/database/allocations/${id}/credentials`,
        undefined,
        {
          200: AllocationCredentials,
        },
      );
      return answer as AllocationCredentials;
    },

    /**
     * Whether a named API key presented to instance-service is usable, and its scopes. The key is
     * sent in the body (never in a URL), over the same connection as every other call.
     */
    async introspectKey(key: string): Promise<IntrospectKeyAnswer> {
      const answer = await call<IntrospectKeyAnswer>(
        'introspect_key',
        'POST',
        '/api/database/api-keys/introspect',
        { key },
        { 200: IntrospectKeyAnswer },
      );
      return answer as IntrospectKeyAnswer;
    },

    /** Suspends (no login, sessions ended) or resumes the instance's database. */
    async setSuspended(instanceId: string, suspended: boolean): Promise<AllocationUsage> {
      const id = uuid.parse(instanceId);
      const action = suspended ? 'suspend' : 'resume';
      const answer = await call<AllocationUsage>(
        action,
        'POST',
        `/api/database/allocations/${id}/${action}`,
        {},
        { 200: AllocationUsage },
      );
      return answer as AllocationUsage;
    },

    /** Admin: a backup of the instance's allocation now (one already running is answered as is). */
    async startBackup(instanceId: string): Promise<Backup> {
      const id = uuid.parse(instanceId);
      return (await call<Backup>(
        'start_backup',
        'POST',
        '/api/database/admin/backups',
        { instance_id: id },
        { 202: Backup },
        { token: adminToken() },
      )) as Backup;
    },

    /** Admin (admin:read): one backup with its manifest; null when there is none. */
    async getBackup(backupId: string): Promise<Backup | null> {
      const id = uuid.parse(backupId);
      const answer = await call<Backup>(
        'get_backup',
        'GET',
        `/api/database/admin/backups/${id}`,
        undefined,
        { 200: Backup },
        { token: adminToken(), notFoundIsAnswer: true },
      );
      return answer === NotFound ? null : (answer as Backup);
    },

    /** Admin (admin:read): the instance's backups, newest first. */
    async listBackups(
      instanceId: string,
      filter: { status?: Backup['status']; limit?: number; offset?: number } = {},
    ): Promise<BackupList> {
      const query = new URLSearchParams({ instance_id: uuid.parse(instanceId) });
      for (const [k, v] of Object.entries(filter)) if (v !== undefined) query.set(k, String(v));
      return (await call<BackupList>(
        'list_backups',
        'GET',
        `/api/database/admin/backups?${query}`,
        undefined,
        { 200: BackupList },
        { token: adminToken() },
      )) as BackupList;
    },

    /**
     * Admin: restore a backup (replace, or copy into another instance of the customer). Not
     * retried: a second request after a lost answer would meet the first restore (409).
     */
    async restoreBackup(backupId: string, request: RestoreRequest): Promise<Restore> {
      const id = uuid.parse(backupId);
      return (await call<Restore>(
        'restore_backup',
        'POST',
        `/api/database/admin/backups/${id}/restore`,
        RestoreRequest.parse(request),
        { 202: Restore },
        { token: adminToken(), retries: 0 },
      )) as Restore;
    },

    /** Admin (admin:read): a restore's phase and progress; null when there is none. */
    async getRestore(restoreId: string): Promise<Restore | null> {
      const id = uuid.parse(restoreId);
      const answer = await call<Restore>(
        'get_restore',
        'GET',
        `/api/database/admin/restores/${id}`,
        undefined,
        { 200: Restore },
        { token: adminToken(), notFoundIsAnswer: true },
      );
      return answer === NotFound ? null : (answer as Restore);
    },

    /**
     * Changes the instance's plan. Within its placement the change is in effect now
     * (`applied`, its usage); to the other placement the database moves (`moving`, the move).
     */
    async changePlan(
      instanceId: string,
      planTier: string,
    ): Promise<{ kind: 'applied'; usage: AllocationUsage } | { kind: 'moving'; change: PlanChangeStarted }> {
      const id = uuid.parse(instanceId);
      const answer = await call<AllocationUsage | PlanChangeStarted>(
        'change_plan',
        'POST',
        `/api/database/allocations/${id}/plan`,
        { plan_tier: planTier },
        { 200: AllocationUsage, 202: PlanChangeStarted },
        // Not retried: a change of placement is not a repeatable request (the second meets the first).
        { retries: 0 },
      );
      return 'move' in (answer as object)
        ? { kind: 'moving', change: answer as PlanChangeStarted }
        : { kind: 'applied', usage: answer as AllocationUsage };
    },

    /** Drops the database and role and frees the slot; "already gone" is success. */
    async release(instanceId: string): Promise<z.infer<typeof Released>> {
      const id = uuid.parse(instanceId);
      const answer = await call<z.infer<typeof Released>>(
        'release',
        'DELETE',
        `/api/database/allocations/${id}`,
        undefined,
        {
          200: Released,
        },
      );
      return answer as z.infer<typeof Released>;
    },
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function parseError(text: string): ErrorResponse | undefined {
  const parsed = ErrorResponse.safeParse(parseJson(text));
  return parsed.success ? parsed.data : undefined;
}

function parseRetryAfter(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : undefined;
}

function describeFetchError(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError'))
    return `no answer within ${timeoutMs} ms`;
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

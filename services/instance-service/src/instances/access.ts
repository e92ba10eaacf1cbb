// Suspend and resume an instance for the portal (a customer who stopped paying): database-service
// makes the instance's database refuse logins and ends its sessions, or lets the same password in
// again, through database-service's allocate-scope routes with the token instance-service
// allocates with (no admin token: a portal-facing service holds none). Audited here as well as in
// database-service.
import { DatabaseServiceError } from '@tenantdb/contracts';
import {
  ConflictError,
  HttpError,
  NotFoundError,
  type RequestContext,
  UnavailableError,
} from '@tenantdb/http';
import type { InstanceServiceDeps } from '../context';

export type InstanceAccess = ReturnType<typeof createInstanceAccess>;

/** The customer's own instance, ready: 404 for another's (or none), 409 for one not ready. */
export async function readyInstance(repo: InstanceServiceDeps['repo'], id: string, customerId: string) {
  const row = await repo.findForCustomer(id, customerId);
  if (!row) throw new NotFoundError('no such instance for this customer');
  if (row.status !== 'ready') throw new ConflictError(`the instance is ${row.status}`);
  return row;
}

/**
 * A change database-service makes for the portal: its refusals passed on as they are (its 404 —
 * the instance is ours, but it holds no live database for it now — as 409), with Retry-After; an
 * outage, or a token it refused, as 503.
 */
export async function askDatabaseService<T>(change: () => Promise<T>): Promise<T> {
  try {
    return await change();
  } catch (err) {
    if (err instanceof DatabaseServiceError && err.status < 500 && err.status !== 401 && err.status !== 403)
      throw new HttpError(
        err.status === 404 ? 409 : err.status,
        err.body?.message ?? 'database-service refused it',
        err.retryAfterSeconds !== undefined ? { 'retry-after': String(err.retryAfterSeconds) } : {},
      );
    throw new UnavailableError('database-service could not do it now; retry');
  }
}

export function createInstanceAccess(deps: Pick<InstanceServiceDeps, 'repo' | 'databaseService'>) {
  const { repo, databaseService } = deps;
  return async function setSuspended(
    id: string,
    customerId: string,
    suspended: boolean,
    ctx: RequestContext,
  ): Promise<{ id: string; suspended: boolean }> {
    const row = await readyInstance(repo, id, customerId);
    const answer = await askDatabaseService(() => databaseService.setSuspended(row.id, suspended));
    await repo.audit({
      actor: ctx.actor,
      action: suspended ? 'instance.suspended' : 'instance.resumed',
      request_id: ctx.requestId,
      instance_id: row.id,
      customer_id: row.customer_id,
    });
    return { id: row.id, suspended: answer.suspended };
  };
}

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

export function createInstanceAccess(deps: Pick<InstanceServiceDeps, 'repo' | 'databaseService'>) {
  const { repo, databaseService } = deps;
  return async function setSuspended(
    id: string,
    customerId: string,
    suspended: boolean,
    ctx: RequestContext,
  ): Promise<{ id: string; suspended: boolean }> {
    const row = await repo.findForCustomer(id, customerId);
    if (!row) throw new NotFoundError('no such instance for this customer');
    if (row.status !== 'ready') throw new ConflictError(`the instance is ${row.status}`);
    let answer: Awaited<ReturnType<typeof databaseService.setSuspended>>;
    try {
      answer = await databaseService.setSuspended(row.id, suspended);
    } catch (err) {
      if (err instanceof DatabaseServiceError && err.status < 500 && err.status !== 401 && err.status !== 403)
        throw new HttpError(
          err.status === 404 ? 409 : err.status,
          err.body?.message ?? 'database-service refused it',
        );
      throw new UnavailableError('database-service could not do it now; retry');
    }
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

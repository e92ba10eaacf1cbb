// What the portal can do with instances: create (idempotent with an Idempotency-Key), read, list,
// read the database password (audited), delete. The database itself is allocated by the
// wait-for-database job; a create only records the instance and enqueues that job.
import { createHash } from 'node:crypto';
import {
  type CreateInstanceRequest,
  DatabaseServiceError,
  DatabaseServiceProtocolError,
  DatabaseServiceUnreachableError,
  type Instance,
  type InstanceCredentials,
  type InstanceList,
  type InstanceStatus,
} from '@tenantdb/contracts';
import {
  BadRequestError,
  ConflictError,
  NotFoundError,
  type RequestContext,
  UnavailableError,
  UnprocessableError,
} from '@tenantdb/http';
import type { InstanceServiceDeps } from '../context';
import type { InstanceRow } from '../db';

export type InstancesService = ReturnType<typeof createInstancesService>;

/** The one view of an instance the API answers with: never the whole row. */
export function toInstance(row: InstanceRow): Instance {
  const iso = (d: Date | null) => d?.toISOString() ?? null;
  return {
    id: row.id,
    customer_id: row.customer_id,
    name: row.name,
    plan_tier: row.plan_tier,
    status: row.status,
    wait_reason: row.wait_reason,
    error: row.error,
    db_host: row.db_host,
    db_port: row.db_port,
    db_name: row.db_name,
    db_user: row.db_user,
    callback_url: row.callback_url,
    callback_status: row.callback_status,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    ready_at: iso(row.ready_at),
    failed_at: iso(row.failed_at),
    deleted_at: iso(row.deleted_at),
  };
}

/** What makes two create requests "the same body" for an Idempotency-Key. */
function requestDigest(body: CreateInstanceRequest): string {
  const canonical = JSON.stringify([body.customer_id, body.name, body.plan_tier, body.callback_url ?? null]);
  return createHash('sha256').update(canonical).digest('hex');
}

const notFound = () => new NotFoundError('no such instance for this customer');

function isUniqueViolation(err: unknown, constraint: string): boolean {
  return (
    (err as { code?: string; constraint?: string }).code === '23505' &&
    (err as { constraint?: string }).constraint === constraint
  );
}

/** database-service could not serve a request made on the caller's behalf: 503 or 409, never 500. */
function upstreamError(err: unknown): Error {
  if (
    err instanceof DatabaseServiceUnreachableError ||
    (err instanceof DatabaseServiceError && err.transient)
  )
    return new UnavailableError('database-service is unavailable; retry', 5);
  if (err instanceof DatabaseServiceError && err.status === 409)
    return new ConflictError(`database-service: ${err.body?.message ?? 'conflict'}`);
  if (err instanceof DatabaseServiceError || err instanceof DatabaseServiceProtocolError)
    return new UnavailableError('database-service refused the request; see the instance-service logs', 5);
  return err as Error;
}

export function createInstancesService(deps: InstanceServiceDeps) {
  const { db, repo, queues, databaseService, callbackTargets, plans, logger } = deps;

  /** The job that moves an unsettled instance on; a no-op while one is queued (deterministic id). */
  async function resume(row: InstanceRow): Promise<void> {
    if (row.status === 'pending' || row.status === 'waiting_for_database')
      await queues.enqueue('wait-for-database', { instance_id: row.id });
  }

  async function replay(
    existing: InstanceRow,
    digest: string,
  ): Promise<{ instance: Instance; replayed: true }> {
    if (existing.request_digest !== digest)
      throw new UnprocessableError('this Idempotency-Key was used with a different request body');
    // A first attempt whose enqueue was lost (Redis blipped after the insert) is made good here.
    await resume(existing);
    return { instance: toInstance(existing), replayed: true };
  }

  return {
    async create(
      body: CreateInstanceRequest,
      idempotencyKey: string | undefined,
      ctx: RequestContext,
    ): Promise<{ instance: Instance; replayed: boolean }> {
      if (body.callback_url) {
        const refused = callbackTargets.refuse(body.callback_url);
        if (refused) throw new BadRequestError(refused);
      }
      const digest = requestDigest(body);
      if (idempotencyKey) {
        const existing = await repo.findByIdempotencyKey(body.customer_id, idempotencyKey);
        if (existing) return replay(existing, digest);
      }
      // After the replay: a repeat answers its instance even if its plan was removed since.
      // database-service unreachable: accepted, and wait-for-database settles it (docs/api.md).
      if ((await plans.check(body.plan_tier)) === 'unknown')
        throw new BadRequestError(`unknown plan_tier "${body.plan_tier}"`);
      let row: InstanceRow;
      try {
        row = await db.transaction().execute(async (trx) => {
          const inserted = await repo.insert(
            {
              customer_id: body.customer_id,
              name: body.name,
              plan_tier: body.plan_tier,
              callback_url: body.callback_url ?? null,
              idempotency_key: idempotencyKey ?? null,
              request_digest: digest,
            },
            trx,
          );
          await repo.audit(
            {
              actor: ctx.actor,
              action: 'instance.create',
              request_id: ctx.requestId,
              instance_id: inserted.id,
              customer_id: inserted.customer_id,
              details: { plan_tier: inserted.plan_tier, idempotency_key: idempotencyKey !== undefined },
            },
            trx,
          );
          return inserted;
        });
      } catch (err) {
        // The same key raced in from another request: that one won, answer as a repeat.
        if (idempotencyKey && isUniqueViolation(err, 'instances_customer_idempotency_key')) {
          const existing = await repo.findByIdempotencyKey(body.customer_id, idempotencyKey);
          if (existing) return replay(existing, digest);
        }
        throw err;
      }
      try {
        await queues.enqueue('wait-for-database', { instance_id: row.id });
      } catch (err) {
        // Nobody has seen this instance yet: take it back so the caller's retry starts clean.
        // (If even that fails, the sweep finds it pending and enqueues its job.)
        await repo
          .deleteUnstarted(row.id)
          .then(() =>
            repo.audit({
              actor: ctx.actor,
              action: 'instance.create_aborted',
              request_id: ctx.requestId,
              instance_id: row.id,
              customer_id: row.customer_id,
              details: { reason: 'job queue unavailable' },
            }),
          )
          .catch(() => {});
        throw err;
      }
      return { instance: toInstance(row), replayed: false };
    },

    async get(id: string, customerId: string): Promise<Instance> {
      const row = await repo.findForCustomer(id, customerId);
      if (!row) throw notFound();
      return toInstance(row);
    },

    async list(q: {
      customer_id: string;
      status?: InstanceStatus;
      limit: number;
      offset: number;
    }): Promise<InstanceList> {
      const { rows, total } = await repo.list({
        customerId: q.customer_id,
        ...(q.status ? { status: q.status } : {}),
        limit: q.limit,
        offset: q.offset,
      });
      return { instances: rows.map(toInstance), total_count: total, limit: q.limit, offset: q.offset };
    },

    /**
     * The database password, read from database-service when asked (its credentials read, which
     * it audits; a read never allocates), so instance-service stores no secret. Every read is
     * audited here too before the password is returned.
     */
    async credentials(id: string, customerId: string, ctx: RequestContext): Promise<InstanceCredentials> {
      const row = await repo.findForCustomer(id, customerId);
      if (!row) throw notFound();
      if (row.status !== 'ready')
        throw new ConflictError(`the instance is ${row.status}; credentials are available once it is ready`);
      let answer: Awaited<ReturnType<typeof databaseService.credentials>> | undefined;
      try {
        answer = await databaseService.credentials(row.id);
      } catch (err) {
        // 404: database-service holds no live database for the instance (released out of band).
        if (!(err instanceof DatabaseServiceError && err.status === 404)) throw upstreamError(err);
      }
      const current = await repo.findById(row.id);
      if (current?.status !== 'ready') {
        // Deleted while we asked: its database is released by the job, never handed out.
        await queues.enqueue('release-database', { instance_id: row.id }).catch(() => {});
        throw notFound();
      }
      if (!answer || answer.db_server_id !== row.db_server_id || answer.db_name !== row.db_name) {
        // The instance's database is gone (released out of band), and whatever live one
        // database-service holds for it now is not it: never hand that out as this instance's.
        logger.warn({ instance_id: row.id }, 'the database of a ready instance no longer exists');
        throw new ConflictError('the database of this instance no longer exists');
      }
      await repo.audit({
        actor: ctx.actor,
        action: 'instance.credentials',
        request_id: ctx.requestId,
        instance_id: row.id,
        customer_id: row.customer_id,
      });
      return {
        instance_id: row.id,
        db_host: answer.db_host,
        db_port: answer.db_port,
        db_name: answer.db_name,
        db_user: answer.db_user,
        db_password: answer.db_password,
        ...(answer.sslmode ? { sslmode: answer.sslmode, ssl_root_cert: answer.ssl_root_cert } : {}),
      };
    },

    /**
     * Deleting: the database is released through database-service, then the instance is
     * `deleted`. If database-service cannot do it now the instance stays `deleting` and the
     * release-database job finishes it. Idempotent: a deleted instance answers as deleted.
     */
    async remove(
      id: string,
      customerId: string,
      ctx: RequestContext,
    ): Promise<{ instance: Instance; done: boolean }> {
      const row = await repo.findForCustomer(id, customerId);
      if (!row) throw notFound();
      if (row.status === 'deleted') return { instance: toInstance(row), done: true };
      const deleting = await db.transaction().execute(async (trx) => {
        const changed = await repo.markDeleting(row.id, trx);
        if (changed) {
          await repo.audit(
            {
              actor: ctx.actor,
              action: 'instance.delete',
              request_id: ctx.requestId,
              instance_id: row.id,
              customer_id: row.customer_id,
              details: { from: row.status },
            },
            trx,
          );
        }
        return changed;
      });
      const current = deleting ?? (await repo.findById(row.id));
      if (!current) throw notFound();
      if (current.status === 'deleted') return { instance: toInstance(current), done: true };

      let released = false;
      try {
        await databaseService.release(row.id);
        released = true;
      } catch (err) {
        logger.warn({ instance_id: row.id, reason: (err as Error).message }, 'release deferred to the job');
      }
      const deleted = released ? await repo.markDeleted(row.id) : undefined;
      // Also after a release that worked: the job checks again after the settle time, in case an
      // allocate sent before the delete lands later.
      await queues.enqueue('release-database', { instance_id: row.id }).catch((err) => {
        // Deleted already: the sweep enqueues the late check once Redis is back. Still deleting:
        // the caller must hear that nothing will finish it until then.
        if (!deleted) throw err;
      });
      const after = deleted ?? (await repo.findById(row.id)) ?? current;
      return { instance: toInstance(after), done: after.status === 'deleted' };
    },
  };
}

// Shared placement: reserve a slot on a pool with room (one catalog statement), then create or
// claim the database there; a pool that fails at the SQL step is left out and another one tried.
import { randomUUID } from 'node:crypto';
import type {
  CatalogDb,
  Plan,
  ReservationsRepo,
  ServerAddress,
  ServersRepo,
  TenantDatabase,
  TenantDatabasesRepo,
} from '@tenantdb/catalog';
import type { Allocated, AllocateRequest, Provisioning } from '@tenantdb/contracts';
import { type RequestContext, UnavailableError } from '@tenantdb/http';
import { type Queues, recordUnmetDemand } from '@tenantdb/jobs';
import {
  generateTenantNames,
  guardrailsOf,
  PoolServerBusyError,
  PoolServerUnavailableError,
} from '@tenantdb/pool-server';
import { generatePassword, type SecretBox } from '@tenantdb/secrets';
import type { Limits } from '../limits';
import type { AllocationConfig } from './allocation.service';
import type { Answers } from './answers';
import type { Materialize } from './materialize';

/** Rolls back a reservation whose instance already has a live row (see `reserve`). */
class AlreadyLive extends Error {}

/** How often a request tries another pool when the chosen one fails at the SQL step. */
const POOL_ATTEMPTS = 3;

type Reservation =
  | { kind: 'reserved'; server: ServerAddress; row: TenantDatabase; password: string; warm: boolean }
  | { kind: 'no-room' }
  | { kind: 'duplicate' };

export interface SharedPlacementDeps {
  db: CatalogDb;
  servers: Pick<ServersRepo, 'hasPlaceableRoom'>;
  reservations: Pick<ReservationsRepo, 'reserveShared'>;
  tenants: Pick<TenantDatabasesRepo, 'findLiveByInstance'>;
  secrets: Pick<SecretBox, 'encrypt' | 'decrypt'>;
  queues: Queues;
  config: Pick<AllocationConfig, 'strategy' | 'retryAfterSeconds'>;
  limits: Pick<Limits, 'admitInstance'>;
  answers: Answers;
  materialize: Materialize;
}

export function createSharedPlacement(deps: SharedPlacementDeps) {
  const { db, servers, reservations, tenants, secrets, queues, config, limits, answers, materialize } = deps;

  /** A slot on a pool with room, and the row that holds it (a warm database when the pool has one). */
  async function reserveShared(
    req: AllocateRequest,
    plan: Plan,
    ctx: RequestContext,
    excludeIds: string[],
  ): Promise<Reservation> {
    // Postgres may pick the reservation as a deadlock victim under contention (its row locks on
    // pools and warm rows meet other reservations, releases and refills): nothing was written,
    // so it is simply run again.
    for (let attempt = 1; ; attempt++) {
      try {
        return await reserveSharedOnce(req, plan, ctx, excludeIds);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if ((code === '40P01' || code === '40001') && attempt < 4) continue;
        throw err;
      }
    }
  }

  async function reserveSharedOnce(
    req: AllocateRequest,
    plan: Plan,
    ctx: RequestContext,
    excludeIds: string[],
  ): Promise<Reservation> {
    const password = generatePassword();
    const names = generateTenantNames();
    const id = randomUUID(); // a new row's, chosen here: its password is encrypted for it
    const request = {
      id,
      instance_id: req.instance_id,
      customer_id: req.customer_id,
      plan_tier: plan.plan_tier,
      connection_limit: plan.connection_limit,
      password_enc: secrets.encrypt(password, id),
      db_name: names.dbName,
      db_user: names.dbUser,
      actor: ctx.actor,
      request_id: ctx.requestId,
    };
    // One try: the customer's instances counted under its lock (409 at its limit), then the
    // reservation statement, in one transaction, so concurrent requests cannot overshoot. A
    // duplicate leaves that transaction aborted: it is rolled back (by throwing) and answered.
    const reserve = (skipLocked: boolean) =>
      db
        .transaction()
        .execute(async (trx) => {
          await limits.admitInstance(trx, req, plan, { dedicated: false });
          const result = await reservations.reserveShared(
            request,
            { strategy: config.strategy, excludeIds, skipLocked },
            trx,
          );
          if (result.kind === 'duplicate') throw new AlreadyLive();
          return result;
        })
        .catch((err) => {
          if (err instanceof AlreadyLive) return { kind: 'duplicate' } as const;
          throw err;
        });
    // Skip pools other requests hold first (no waiting); then wait for a held one; a pool that
    // filled up while we waited sends us round again as long as any pool has room. Each try is
    // one reservation statement: a pool is held only while it runs and commits.
    for (let round = 0; round < 10; round++) {
      const first = await reserve(true);
      const result = first.kind === 'not-taken' ? await reserve(false) : first;
      // A claimed warm database keeps the password it was made with.
      if (result.kind === 'reserved') {
        const { row } = result;
        return { ...result, password: result.warm ? secrets.decrypt(row.password_enc, row.id) : password };
      }
      if (result.kind === 'duplicate') return result;
      if (!(await servers.hasPlaceableRoom(excludeIds))) return { kind: 'no-room' };
    }
    throw new UnavailableError('shared pools are contended; retry', 1);
  }

  return async function allocateShared(
    req: AllocateRequest,
    plan: Plan,
    ctx: RequestContext,
  ): Promise<Allocated | Provisioning> {
    const excluded: string[] = [];
    for (let attempt = 0; attempt < POOL_ATTEMPTS; attempt++) {
      const reservation = await reserveShared(req, plan, ctx, excluded);
      if (reservation.kind === 'duplicate') {
        const live = await tenants.findLiveByInstance(req.instance_id);
        const answer = live && (await answers.answerExisting(live, req));
        if (answer) return answer;
        continue;
      }
      if (reservation.kind === 'no-room') {
        // Counted before the planner runs, so that it provisions for this instance too.
        await recordUnmetDemand(queues, req.instance_id);
        await queues.enqueue('grow-shared-capacity', { reason: 'allocation found no shared pool with room' });
        return answers.provisioning('no shared pool has room; more capacity is being provisioned');
      }
      const { server, row, password, warm } = reservation;
      try {
        await materialize(server, row, password, warm, guardrailsOf(plan));
      } catch (err) {
        if (err instanceof PoolServerUnavailableError) {
          excluded.push(server.id);
          continue;
        }
        if (err instanceof PoolServerBusyError) throw new UnavailableError('pool servers are busy; retry', 1);
        throw err;
      }
      return { status: 'allocated', ...(await answers.credentials(server, row)) };
    }
    throw new UnavailableError('pool servers are unavailable; retry later', config.retryAfterSeconds);
  };
}

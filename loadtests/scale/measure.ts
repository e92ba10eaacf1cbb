// The measurements `pnpm bench:scale` takes on each catalog size, all through loadtests/bench's
// closed-loop generator: allocation of new instances through the API (real databases on the real
// pool servers), the reservation statement alone through pg, and the two admin reads.
import { randomUUID } from 'node:crypto';
import { createReservationsRepo } from '@tenantdb/catalog';
import type { Allocated, Pool, Stats } from '@tenantdb/contracts';
import type { CompiledQuery } from 'kysely';
import { httpError } from '../bench/api';
import { connectCatalog } from '../bench/catalog';
import { ACCEPTED, closedLoop, fail, type LoadResult, OK } from '../bench/load';
import { endAll } from '../bench/pg';
import type { Stack } from '../bench/stack';
import { freshReservation, recordStatements } from './explain';

export interface CreatedTenant {
  db_host: string;
  db_port: number;
  db_name: string;
  db_user: string;
}

export interface AllocatePlan {
  concurrency: number;
  requests: number;
  maxMs: number;
  warmupMs: number;
}

/** POST /allocate with a fresh instance per request; every 200 created a database on a pool server. */
export async function measureAllocate(
  stack: Stack,
  plan: AllocatePlan,
  created: CreatedTenant[],
): Promise<LoadResult> {
  return closedLoop(
    {
      concurrency: plan.concurrency,
      durationMs: plan.maxMs,
      maxRequests: plan.requests,
      warmupMs: plan.warmupMs,
    },
    async () => {
      const res = await stack.api.post<Allocated>('/api/database/allocate', {
        instance_id: randomUUID(),
        customer_id: randomUUID(),
        plan_tier: 'standard',
      });
      if (res.status === 202) return ACCEPTED;
      if (res.status !== 200) return fail(httpError(res));
      const { db_host, db_port, db_name, db_user } = res.body;
      created.push({ db_host, db_port, db_name, db_user });
      return OK;
    },
  );
}

export interface ReadPlan {
  concurrency: number;
  durationMs: number;
  warmupMs: number;
}

/** GET /admin/stats, checking the fleet it counts is the seeded one. */
export function measureStats(stack: Stack, plan: ReadPlan, expectedPools: number): Promise<LoadResult> {
  return closedLoop(plan, async () => {
    const res = await stack.api.request<Stats>(
      'GET',
      '/api/database/admin/stats',
      undefined,
      stack.adminToken,
    );
    if (res.status !== 200) return fail(httpError(res));
    if (res.body.total_pools !== expectedPools)
      return fail(`total_pools ${res.body.total_pools}, expected ${expectedPools}`);
    return OK;
  });
}

/**
 * GET /admin/pools: without a query (the first page, 100 servers), or with `limit` to tell the
 * page's size from the catalog's; checks the page is full and counts the whole catalog.
 */
export function measurePoolsPage(
  stack: Stack,
  plan: ReadPlan,
  expectedTotal: number,
  limit?: number,
): Promise<LoadResult> {
  const path = `/api/database/admin/pools${limit === undefined ? '' : `?limit=${limit}`}`;
  const pageSize = Math.min(limit ?? 100, expectedTotal);
  return closedLoop(plan, async () => {
    const res = await stack.api.request<{ pools: Pool[]; total_count: number }>(
      'GET',
      path,
      undefined,
      stack.adminToken,
    );
    if (res.status !== 200) return fail(httpError(res));
    if (res.body.total_count !== expectedTotal)
      return fail(`total_count ${res.body.total_count}, expected ${expectedTotal}`);
    if (res.body.pools.length !== pageSize) return fail(`the page has ${res.body.pools.length} pools`);
    return OK;
  });
}

/**
 * The reservation statement alone, as ReservationsRepo.reserveShared sends it (pack, skip locked),
 * then without skip locked when that found every pool held (as the service retries), from
 * `concurrency` pg sessions on the catalog, each in a transaction that is rolled back: the
 * catalog's own share of an allocation, without the pool server's CREATE DATABASE or the commit
 * flush. Statements are built before the clock starts, one per request (distinct instances).
 */
export async function measureReservation(
  stack: Stack,
  plan: { concurrency: number; requests: number; warmupRequests: number },
  passwordEnc: string,
): Promise<LoadResult> {
  const total = plan.requests + plan.warmupRequests;
  const statements: { skip: CompiledQuery; wait: CompiledQuery }[] = [];
  for (let i = 0; i < total; i++) {
    const request = freshReservation(passwordEnc, `reserve-${i}`);
    const [skip, wait] = await recordStatements(async (db) => {
      const repo = createReservationsRepo(db);
      await repo.reserveShared(request, { strategy: 'pack', skipLocked: true });
      await repo.reserveShared(request, { strategy: 'pack', skipLocked: false });
    });
    statements.push({ skip: skip!, wait: wait! });
  }
  const clients = await Promise.all(Array.from({ length: plan.concurrency }, () => connectCatalog(stack)));
  try {
    const run = async (offset: number, count: number) =>
      closedLoop(
        { concurrency: plan.concurrency, durationMs: 60_000, maxRequests: count },
        async (worker, seq) => {
          const c = clients[worker]!;
          const q = statements[offset + seq]!;
          await c.query('BEGIN');
          try {
            // As the service does: every pool with room held by another session → wait for one.
            let { rowCount } = await c.query(q.skip.sql, [...q.skip.parameters]);
            if (rowCount === 0) ({ rowCount } = await c.query(q.wait.sql, [...q.wait.parameters]));
            return rowCount === 1 ? OK : fail(`reserved ${rowCount} rows`);
          } finally {
            await c.query('ROLLBACK');
          }
        },
      );
    await run(0, plan.warmupRequests);
    return await run(plan.warmupRequests, plan.requests);
  } finally {
    await endAll(clients);
  }
}

// The requests `pnpm bench:scale` measures on each catalog, as operations for loadtests/bench's
// closed-loop generators (run.ts alternates them between the catalogs): allocation of new
// instances through the API (real databases on the real pool servers), the reservation statement
// alone through pg, and the two admin reads.
import { randomUUID } from 'node:crypto';
import { createReservationsRepo } from '@tenantdb/catalog';
import type { Allocated, Pool, Stats } from '@tenantdb/contracts';
import type { CompiledQuery } from 'kysely';
import { httpError } from '../bench/api';
import { connectCatalog } from '../bench/catalog';
import { ACCEPTED, fail, OK, type Operation } from '../bench/load';
import { endAll } from '../bench/pg';
import type { CatalogService } from '../bench/stack';
import { freshReservation, recordStatements } from './explain';

export interface CreatedTenant {
  db_host: string;
  db_port: number;
  db_name: string;
  db_user: string;
}

/** POST /allocate with a fresh instance per request; every 200 created a database on a pool server. */
export function allocateOp(target: CatalogService, created: CreatedTenant[]): Operation {
  return async () => {
    const res = await target.api.post<Allocated>('/api/database/allocate', {
      instance_id: randomUUID(),
      customer_id: randomUUID(),
      plan_tier: 'standard',
    });
    if (res.status === 202) return ACCEPTED;
    if (res.status !== 200) return fail(httpError(res));
    const { db_host, db_port, db_name, db_user } = res.body;
    created.push({ db_host, db_port, db_name, db_user });
    return OK;
  };
}

/** GET /admin/stats, checking the fleet it counts is the seeded one. */
export function statsOp(target: CatalogService, expectedPools: number): Operation {
  return async () => {
    const res = await target.api.request<Stats>(
      'GET',
      '/api/database/admin/stats',
      undefined,
      target.adminToken,
    );
    if (res.status !== 200) return fail(httpError(res));
    if (res.body.total_pools !== expectedPools)
      return fail(`total_pools ${res.body.total_pools}, expected ${expectedPools}`);
    return OK;
  };
}

/**
 * GET /admin/pools: without a query (the first page, 100 servers), or with `limit` to tell the
 * page's size from the catalog's; checks the page is full and counts the whole catalog.
 */
export function poolsPageOp(target: CatalogService, expectedTotal: number, limit?: number): Operation {
  const path = `/api/database/admin/pools${limit === undefined ? '' : `?limit=${limit}`}`;
  const pageSize = Math.min(limit ?? 100, expectedTotal);
  return async () => {
    const res = await target.api.request<{ pools: Pool[]; total_count: number }>(
      'GET',
      path,
      undefined,
      target.adminToken,
    );
    if (res.status !== 200) return fail(httpError(res));
    if (res.body.total_count !== expectedTotal)
      return fail(`total_count ${res.body.total_count}, expected ${expectedTotal}`);
    if (res.body.pools.length !== pageSize) return fail(`the page has ${res.body.pools.length} pools`);
    return OK;
  };
}

/**
 * The reservation statement alone, as ReservationsRepo.reserveShared sends it (pack, skip locked),
 * then without skip locked when that found every pool held (as the service retries), from
 * `sessions` pg sessions on the catalog (the operation's worker picks one), each in a transaction
 * that is rolled back: the catalog's own share of an allocation, without the pool server's CREATE
 * DATABASE or the commit flush. The statements are built here, before any clock starts, one per
 * request (`count`, distinct instances). `close` ends the sessions.
 */
export async function reservationOp(
  target: CatalogService,
  plan: { sessions: number; count: number },
  passwordEnc: string,
): Promise<{ op: Operation; close(): Promise<void> }> {
  const statements: { skip: CompiledQuery; wait: CompiledQuery }[] = [];
  for (let i = 0; i < plan.count; i++) {
    const request = freshReservation(passwordEnc, `reserve-${i}`);
    const [skip, wait] = await recordStatements(async (db) => {
      const repo = createReservationsRepo(db);
      await repo.reserveShared(request, { strategy: 'pack', skipLocked: true });
      await repo.reserveShared(request, { strategy: 'pack', skipLocked: false });
    });
    statements.push({ skip: skip!, wait: wait! });
  }
  const clients = await Promise.all(Array.from({ length: plan.sessions }, () => connectCatalog(target)));
  return {
    op: async (worker, seq) => {
      const c = clients[worker]!;
      const q = statements[seq];
      if (!q) return fail(`request ${seq} has no statement (${statements.length} built)`);
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
    close: () => endAll(clients),
  };
}

// Catalog access for the scenarios that watch the worker: a pg client on the service's catalog,
// polling until the catalog says something happened, admin connections to a server from its row,
// and the slot accounting check (no over-commit) run after the allocation scenarios.
import { CATALOG_SCHEMA } from '@tenantdb/catalog';
import type pg from 'pg';
import { connectPg } from './pg';
import type { Stack, WorkerProcess } from './stack';
import { tail } from './stack';

export function connectCatalog(stack: Pick<Stack, 'catalogUrl'>): Promise<pg.Client> {
  return connectPg({ connectionString: stack.catalogUrl, options: `-c search_path=${CATALOG_SCHEMA}` });
}

/** The db_servers fields the scenarios read. */
export interface ServerRow {
  id: string;
  name: string;
  status: string;
  status_reason: string | null;
  host: string | null;
  port: number | null;
  admin_user: string | null;
  admin_password_enc: string | null;
  max_instances: number;
  current_instances: number;
}

export async function serverRow(catalog: pg.Client, id: string): Promise<ServerRow> {
  const { rows } = await catalog.query<ServerRow>(
    `SELECT id, name, status, status_reason, host, port, admin_user, admin_password_enc,
            max_instances, current_instances
       FROM db_servers WHERE id = $1`,
    [id],
  );
  if (!rows[0]) throw new Error(`db_servers row ${id} is gone`);
  return rows[0];
}

/** A server the bench reaches as its admin, shaped like the registered pools (id + url). */
export interface AdminTarget {
  id: string;
  name: string;
  host: string;
  port: number;
  url(database?: string): string;
}

export function adminTarget(stack: Stack, row: ServerRow): AdminTarget {
  if (!row.host || !row.port || !row.admin_user || !row.admin_password_enc)
    throw new Error(`server ${row.name} has no address or admin credentials yet`);
  const user = encodeURIComponent(row.admin_user);
  const password = encodeURIComponent(stack.secrets.decrypt(row.admin_password_enc, row.id));
  const { host, port } = row;
  return {
    id: row.id,
    name: row.name,
    host,
    port,
    url: (database = 'postgres') => `postgres://${user}:${password}@${host}:${port}/${database}`,
  };
}

/**
 * Polls `check` until it is true. Fails after `timeoutMs` (with what `state` says of where things
 * stood), or at once when the worker the caller depends on has exited (with the end of its log,
 * which says why).
 */
export async function waitFor(
  check: () => Promise<boolean>,
  opts: {
    timeoutMs: number;
    what: string;
    intervalMs?: number;
    worker?: WorkerProcess;
    state?: () => Promise<string>;
  },
): Promise<void> {
  const deadline = performance.now() + opts.timeoutMs;
  while (!(await check())) {
    if (opts.worker && !opts.worker.alive())
      throw new Error(`database-worker exited while waiting for ${opts.what}:\n${tail(opts.worker.logFile)}`);
    if (performance.now() > deadline)
      throw new Error(
        `timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${opts.state ? ` (${await opts.state()})` : ''}`,
      );
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}

/** Ready warm databases per server (ready_at set: claimable). */
export async function readyWarm(catalog: pg.Client, serverIds: string[]): Promise<Map<string, number>> {
  const { rows } = await catalog.query<{ id: string; n: number }>(
    `SELECT s.id, count(t.id)::int AS n
       FROM unnest($1::uuid[]) AS s(id)
       LEFT JOIN tenant_databases t
         ON t.db_server_id = s.id AND t.status = 'warm' AND t.ready_at IS NOT NULL
      GROUP BY s.id`,
    [serverIds],
  );
  return new Map(rows.map((r) => [r.id, r.n]));
}

/**
 * Over-commit check over every server: current_instances within max_instances, and equal to the
 * number of tenant_databases rows that hold a slot (creating, ready, releasing).
 */
export async function slotAccounting(catalog: pg.Client): Promise<{ servers: number; problems: string[] }> {
  const { rows } = await catalog.query<{
    name: string;
    current_instances: number;
    max_instances: number;
    live: number;
  }>(
    `SELECT s.name, s.current_instances, s.max_instances,
            (SELECT count(*)::int FROM tenant_databases t
              WHERE t.db_server_id = s.id AND t.status IN ('creating', 'ready', 'releasing')) AS live
       FROM db_servers s ORDER BY s.name`,
  );
  const problems = rows.flatMap((r) => {
    const p: string[] = [];
    if (r.current_instances > r.max_instances)
      p.push(`${r.name}: current_instances ${r.current_instances} > max_instances ${r.max_instances}`);
    if (r.current_instances !== r.live)
      p.push(`${r.name}: current_instances ${r.current_instances} ≠ ${r.live} slot-holding rows`);
    return p;
  });
  return { servers: rows.length, problems };
}

// DRAIN: a local pool holding N small tenants (a table of 100 rows each) drained onto another local
// pool through POST …/pools/{id}/drain, by a database-worker with the local driver (PostgreSQL 15,
// wal_level=logical: every move is logical). Measured: the time from the drain call until the pool
// reads drained, against the raw sum of its moves' own times (each move's created_at → finished_at
// in tenant_moves): how much the bounded concurrency (TENANTDB_MOVES_PER_SERVER) buys over moving
// the tenants one after the other, and what the drain adds around the moves.
import { tenantSsl } from '@tenantdb/testkit';
import { httpError } from '../api';
import { connectCatalog, serverRow, waitFor } from '../catalog';
import type { BenchContext, Scenario } from '../context';
import { connectPg } from '../pg';
import { fmtMs, type ResultRow } from '../report';
import { createLocalPools } from './local-pools';

const MOVES_PER_SERVER = 2;

export const drain: Scenario = {
  id: 'drain',
  async run(ctx: BenchContext) {
    const { stack, settings, log } = ctx;
    const n = settings.quick ? 10 : 100;
    const admin = <T = unknown>(method: 'GET' | 'POST', path: string, body?: unknown) =>
      stack.api.request<T>(method, path, body, stack.adminToken);
    const catalog = await connectCatalog(stack);
    // The tenants land on the source only, and the drain can only go to the target.
    const pools = await createLocalPools(
      ctx,
      catalog,
      [
        { name: 'drain-source', max: n, priority: 1 },
        { name: 'drain-target', max: n + 5, priority: 2 },
      ],
      { TENANTDB_MOVES_PER_SERVER: String(MOVES_PER_SERVER), TENANTDB_DRAIN_STEP_MS: '200' },
    );
    const { worker } = pools;
    const [source] = pools.ids as [string, string];
    try {
      for (let i = 0; i < n; i++) {
        const ids = {
          instance_id: crypto.randomUUID(),
          customer_id: crypto.randomUUID(),
          plan_tier: 'standard',
        };
        const res = await stack.api.post<Record<string, unknown>>('/api/database/allocate', ids);
        if (res.status !== 200) throw new Error(`allocating tenant ${i}: ${httpError(res)}`);
        const c = res.body as {
          db_host: string;
          db_port: number;
          db_name: string;
          db_user: string;
          db_password: string;
          db_server_id: string;
        };
        if (c.db_server_id !== source)
          throw new Error(`tenant ${i} landed on ${c.db_server_id}, not the source`);
        const client = await connectPg({
          host: c.db_host,
          port: c.db_port,
          database: c.db_name,
          user: c.db_user,
          password: c.db_password,
          ssl: tenantSsl(res.body as Parameters<typeof tenantSsl>[0]),
        });
        try {
          await client.query(`CREATE SCHEMA app;
            CREATE TABLE app.items (id serial PRIMARY KEY, v text NOT NULL);
            INSERT INTO app.items (v) SELECT md5(g::text) FROM generate_series(1, 100) g;`);
        } finally {
          await client.end().catch(() => {});
        }
      }
      log(`  ${n} tenants on drain-source; draining`);

      const t0 = performance.now();
      const started = await admin('POST', `/api/database/admin/pools/${source}/drain`);
      if (started.status !== 200) throw new Error(`drain: ${httpError(started)}`);
      let lastLog = performance.now();
      await waitFor(
        async () => {
          const row = await serverRow(catalog, source);
          if (performance.now() - lastLog > 10_000) {
            lastLog = performance.now();
            log(`  drain-source: ${row.current_instances} slots held`);
          }
          return row.status === 'drained';
        },
        { timeoutMs: 30 * 60_000, what: 'drain-source to be drained', intervalMs: 50, worker },
      );
      const emptyMs = performance.now() - t0;

      const { rows: moves } = await catalog.query<{ ms: number; phase: string; method: string | null }>(
        `SELECT extract(epoch FROM finished_at - created_at) * 1000 AS ms, phase, method
           FROM tenant_moves WHERE source_server_id = $1`,
        [source],
      );
      const done = moves.filter((m) => m.phase === 'done').map((m) => Number(m.ms));
      const sumMs = done.reduce((a, b) => a + b, 0);
      const sorted = [...done].sort((a, b) => a - b);
      const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
      const failed = moves.length - done.length;
      const methods = [...new Set(moves.map((m) => m.method ?? 'none'))].join(', ');
      const rows: ResultRow[] = [
        {
          name: `DRAIN-MOVES ${n} moves, each created → done`,
          requests: done.length,
          p50Ms: at(0.5),
          p95Ms: at(0.95),
          p99Ms: at(0.99),
          errors: failed,
          comparison: `raw sum ${fmtMs(sumMs)}`,
          verdict: 'info',
        },
        {
          name: `DRAIN ${n} small tenants: drain call → drained`,
          requests: 1,
          p50Ms: emptyMs,
          p95Ms: emptyMs,
          p99Ms: emptyMs,
          errors: failed,
          baseline: `raw sum of the moves ${fmtMs(sumMs)}`,
          comparison: `${(emptyMs / Math.max(sumMs, 1)).toFixed(2)} × the raw sum (${MOVES_PER_SERVER} moves at once)`,
          verdict: 'info',
        },
      ];
      return {
        id: 'drain',
        title: `DRAIN: emptying a pool of ${n} small tenants by moves`,
        rows,
        notes: [
          `Two local pools made through POST /api/database/admin/pools (every other pool cordoned meanwhile: local-pools.ts); ${n} tenants ` +
            'allocated onto the source, each given a table of 100 rows; then POST …/pools/{source}/drain and the ' +
            'clock runs until the source row reads drained (polled every 50 ms).',
          `A database-worker process with TENANTDB_MOVES_PER_SERVER=${MOVES_PER_SERVER}, TENANTDB_MOVE_GRACE_MS=0 ` +
            '(the source database is dropped at once), TENANTDB_DRAIN_STEP_MS=200, and the default data-queue ' +
            `concurrency. Move methods seen: ${methods}.`,
          'The raw sum adds every move’s own time (tenant_moves created_at → finished_at: target role and database, ' +
            'schema, subscription and initial copy, catch-up, cut-over, clean-up, drop of the source): what moving ' +
            'them one after the other would take at best. Below 1× the drain gains from running moves side by ' +
            'side; the rest is the drain’s step interval and the wait for a free move slot.',
        ],
      };
    } finally {
      await pools.close();
      await catalog.end();
    }
  },
};

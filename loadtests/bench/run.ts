// `pnpm bench`: starts the whole stack on this machine, runs the scenarios in order, writes
// docs/benchmarks.md and prints a summary. Exits non-zero only when the harness could not measure
// (a start, a scenario or the teardown failed), never because a target was missed.
//
// --quick: shorter phases and fewer samples (not representative). --only <id,...>: those
// scenarios and the ones they need (select.ts); the report goes to stdout, docs/benchmarks.md is
// left as it is.
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SIGNUP_BURST } from '../workloads';
import type { BenchContext, BenchSettings } from './context';
import { machineFacts } from './machine';
import { renderMarkdown, renderSummary, type ScenarioResult } from './report';
import { scenarios } from './scenarios';
import { selectScenarios } from './select';
import { type Stack, startStack, tail } from './stack';
import { supervise } from './supervise';

const REPORT = fileURLToPath(new URL('../../docs/benchmarks.md', import.meta.url));
/**
 * The whole run takes about nine minutes on a quiet 2-core machine (S5-swarm, with a swarm, three
 * of them: eleven rounds of two containers started and removed) plus about four for issue 7's
 * whole-system scenarios (the signup burst may wait up to two minutes for its last instance), plus
 * the drain of 100 small tenants (several minutes: ~8 s per move here, two at a time), and half as
 * long again when other work shares it; past this something hangs.
 */
const WATCHDOG_MS = 45 * 60_000;

const { quick, only, selected } = commandLine();
const command = ['pnpm bench', quick ? '--quick' : '', only === undefined ? '' : `--only ${only}`]
  .filter(Boolean)
  .join(' ');
const settings: BenchSettings = quick
  ? {
      quick,
      concurrency: 16,
      durationMs: 2_000,
      warmupMs: 500,
      allocateRequests: 60,
      allocateMaxMs: 10_000,
      rawCreateRequests: 40,
      rawCreateMaxMs: 5_000,
      samples: 8,
      warmupSamples: 2,
      provisionSamples: 3,
      warmPools: 4,
      warmPoolCapacity: 1_000,
      warmPerPool: 25,
      warmAllocateMs: 6_000,
    }
  : {
      quick,
      concurrency: 16,
      durationMs: 10_000,
      warmupMs: 2_000,
      allocateRequests: 300,
      allocateMaxMs: 30_000,
      rawCreateRequests: 160,
      rawCreateMaxMs: 15_000,
      samples: 40,
      warmupSamples: 5,
      provisionSamples: 10,
      warmPools: 4,
      warmPoolCapacity: 1_000,
      // Enough for S1-warm's 30 s at the claim rates seen here (with the refill adding to it), and
      // no more: each warm database takes ~0.1 s to make and again to delete on this machine.
      warmPerPool: 100,
      warmAllocateMs: 30_000,
    };

function commandLine() {
  try {
    const { values } = parseArgs({
      options: { quick: { type: 'boolean', default: false }, only: { type: 'string' } },
    });
    return { quick: values.quick, only: values.only, selected: selectScenarios(scenarios, values.only) };
  } catch (err) {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    console.error('usage: pnpm bench [--quick] [--only <scenario id>[,<scenario id>...]]');
    process.exit(2);
  }
}

const t0 = Date.now();
// Other work on the machine skews every figure; the load average shows whether there was any.
const loadAtStart = os.loadavg();
const log = (line: string) => console.log(`[bench +${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);

const run = supervise('bench', WATCHDOG_MS);

async function main(): Promise<number> {
  let exitCode = 0;
  if (only !== undefined) log(`scenarios: ${selected.map((s) => s.id).join(', ')}`);
  log(
    `${quick ? 'quick run; ' : ''}load average before the run: ${loadAtStart.map((l) => l.toFixed(2)).join(', ')} ` +
      '(1, 5, 15 min)',
  );
  try {
    const stack = run.watch(
      await startStack({
        // Room for S1, S3 and their warm-ups many times over: no scenario may see a 202.
        poolCapacities: [2_000, 2_000],
        clientConnections: settings.concurrency,
        log,
      }),
    );
    const ctx: BenchContext = { stack, settings, state: { allocated: [] }, log };
    const results: ScenarioResult[] = [];
    for (const scenario of selected) {
      log(`scenario ${scenario.id}`);
      try {
        const result = await scenario.run(ctx);
        results.push(result);
        if (result.skipped) log(`  skipped: ${result.skipped}`);
        else
          for (const row of result.rows)
            log(`  ${row.name}: ${row.requests} requests, p50 ${row.p50Ms.toFixed(2)} ms, ${row.verdict}`);
      } catch (err) {
        if (run.aborting()) throw err;
        exitCode = 1;
        const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
        log(`  scenario ${scenario.id} failed: ${message}`);
        results.push({ id: scenario.id, title: scenario.id, rows: [], notes: [], error: firstLine(message) });
      }
      if (!stack.serviceAlive()) {
        throw new Error(`database-service exited during ${scenario.id}:\n${tail(stack.serviceLogFile)}`);
      }
    }

    const facts = await machineFacts(stack, { command, quick, startedAt: t0, loadAtStart });
    const serviceLog = summarizeLog([stack.serviceLogFile]);
    const workerLog = stack.workerLogFiles.length ? summarizeLog(stack.workerLogFiles) : [];
    const instanceLog = stack.instanceServiceLogFiles.length
      ? summarizeLog(stack.instanceServiceLogFiles)
      : [];
    const markdown = renderMarkdown({
      facts,
      setup: setupLines(stack, serviceLog, workerLog, instanceLog),
      scenarios: results,
      method: METHOD,
    });
    // A partial run must not replace the full run's results.
    if (only === undefined) writeFileSync(REPORT, markdown);
    else console.log(`\n----- report (--only: not written to ${REPORT}) -----\n\n${markdown}\n-----`);
    console.log('');
    console.log(renderSummary(results));
    console.log('');
    for (const line of serviceLog) console.log(`service log: ${line}`);
    for (const line of workerLog) console.log(`worker log: ${line}`);
    for (const line of instanceLog) console.log(`instance-service log: ${line}`);
    if (only === undefined) console.log(`wrote ${REPORT}`);
  } catch (err) {
    exitCode = 1;
    if (!run.aborting())
      console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  } finally {
    if (!(await run.tearDown(log))) exitCode = 1;
  }
  log(`done (exit ${exitCode})`);
  return exitCode;
}

function setupLines(s: Stack, serviceLog: string[], workerLog: string[], instanceLog: string[]): string[] {
  return [
    'One machine runs everything: a catalog Postgres, two pool Postgres servers, Redis, database-service ' +
      'and the load generator share its cores, so each figure includes the others’ CPU use.',
    `database-service is built with \`createDatabaseService\` in a process of its own (\`loadtests/bench/service-process.ts\`) ` +
      `listening on ${new URL(s.serviceUrl).hostname}; requests travel over real loopback HTTP (keep-alive), not \`inject\`.`,
    `Service settings: LOG_LEVEL=${s.serviceEnv.LOG_LEVEL} (per-request info lines are not written), ` +
      `TENANTDB_RATE_LIMIT_PER_MINUTE=${s.serviceEnv.TENANTDB_RATE_LIMIT_PER_MINUTE} (never reached), ` +
      'catalog pool 20 and placement strategy pack (the defaults).',
    `Pool servers registered through POST /api/database/admin/pools/register with max_instances ${s.pools.length} × 2,000.`,
    `Load: closed loop — ${settings.concurrency} concurrent clients, each sending its next request when the ` +
      'previous one answered; undici keep-alive pool for HTTP, one pg connection per client for RAW rows. ' +
      'Except issue 7’s whole-system scenarios (steady-allocation, admin-polling’s background allocations, ' +
      'signup-burst): open loop, requests started on a fixed schedule whatever the answers take ' +
      '(`openLoop` in `loadtests/bench/load.ts`; rates and counts in `loadtests/workloads.ts`).',
    'The scenarios up to S3 run without database-worker. From S5 on it runs in a process of its own ' +
      '(`services/database-worker/src/main.ts`, LOG_LEVEL=warn, local driver, servers under the bench’s ' +
      'temporary directory, removed through the driver at the end): one for S5 (no warm databases, no periodic ' +
      'jobs), stopped after it, one likewise but with the swarm driver only for S5-swarm (see its section), ' +
      'then one for the warm fleet and the scenarios on it ' +
      `(TENANTDB_WARM_DATABASES=${settings.warmPerPool}, periodic jobs hourly, refills enqueued by the bench). ` +
      'The two registered pools are cordoned before the warm fleet is made, so the warm scenarios place only on ' +
      'its local pools.',
    'The signup burst runs last: it stops the warm fleet’s worker, cordons every active shared pool (an empty ' +
      'fleet), starts two database-worker processes with default capacity settings and instance-service ' +
      '(`services/instance-service/src/main.ts`, LOG_LEVEL=warn) in a process of its own.',
    ...serviceLog.map((l) => `Service log: ${l}`),
    ...workerLog.map((l) => `Worker log: ${l}`),
    ...instanceLog.map((l) => `instance-service log: ${l}`),
  ];
}

const METHOD = [
  'Latency is measured per request in the load generator (performance.now around the request, body read); ' +
    'p50/p95/p99 are nearest-rank percentiles over every request of the measured phase, errors included. In an ' +
    'open loop the clock starts when the request was due, not when it was sent, so a generator running late ' +
    'cannot hide a delay.',
  'Throughput is completed requests divided by the measured phase’s wall time (until the last in-flight ' +
    'request answered). Warm-up phases are not recorded. Errors and 202s are shown with their share of the ' +
    'requests (error rate, 202 rate); "—" in the 202 column: the path cannot answer 202 (raw pg, reads).',
  'Issue 7’s whole-system scenarios (steady-allocation, admin-polling, signup-burst) each run their raw ' +
    'baseline right after the API phase, on the same servers with the same schedule or clients: the same work ' +
    'without our code. Their rates, durations, endpoints and the signup burst’s bound are `loadtests/workloads.ts`, ' +
    'which the k6 scripts in `loadtests/k6/` restate (checked by `loadtests/k6/k6-equivalence.test.ts`).',
  'Ratios compare a throughput with the RAW-TX rate measured minutes earlier in the same run on the same ' +
    'catalog server, so machine noise affects both.',
  'Targets: catalog-only API paths ≥ 40 % of RAW-TX with no errors; S3 p50 ≤ RAW-CREATE p50 + 15 ms; S1 ' +
    'without errors or 202s; S5 (enqueue → active) p95 ≤ 2 s; S5-swarm p95 ≤ RAW-SERVICE p95 + 2 s; S3-warm ' +
    'p50 ≤ 15 ms and p99 ≤ 40 ms, every sample a warm claim; S1-warm ≥ 300 allocations/s with no errors, no 202 ' +
    'and no over-commit; signup burst: every create answered 202 and every instance ready (its callback in) within ' +
    `${SIGNUP_BURST.readyWithinS} s of its request (steady-allocation and admin-polling have no target: info). ` +
    'A missed target is reported as FAIL and does not fail the command; a scenario that ' +
    'cannot run on the machine (S5-swarm without a Docker swarm) is reported as skipped, with the reason, and ' +
    'does not fail it either.',
  'Sequential scenarios (S3, S5, S5-swarm, S3-warm) alternate their samples with the raw baseline’s and ' +
    'alternate which goes first, so drift on the machine hits both. Where a scenario waits for the worker it ' +
    'polls the catalog (every 5–50 ms); set-up and clean-up (refills, dropping raw databases, decommissioning) ' +
    'stay outside the clocks.',
  'S1-warm’s profile: CPU per process group from /proc over the measured phase, and what the service’s catalog ' +
    'sessions and the pools’ admin sessions were doing, sampled from pg_stat_activity every 50 ms (the sampler ' +
    'itself adds five small queries per sample).',
  'Postgres runs with its default durability (fsync on, synchronous_commit on): turning it off would flatter ' +
    'every write path.',
];

/** Warn/error lines of a process (JSON from pino), counted and deduplicated by message. */
function summarizeLog(files: string[]): string[] {
  let text = '';
  try {
    text = files.map((f) => readFileSync(f, 'utf8')).join('\n');
  } catch {
    return ['(no log file)'];
  }
  const counts = new Map<string, number>();
  let other = 0;
  for (const line of text.split('\n').filter(Boolean)) {
    try {
      const entry = JSON.parse(line) as { level?: number; msg?: string };
      const key = `${entry.level === 50 ? 'error' : entry.level === 40 ? 'warn' : `level ${entry.level}`}: ${entry.msg}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    } catch {
      other++;
    }
  }
  const lines = [...counts].map(([k, n]) => `${n} × ${k}`);
  if (other) lines.push(`${other} non-JSON line(s) (see the log file)`);
  return lines.length ? lines : ['no warnings or errors logged'];
}

const firstLine = (s: string) => s.split('\n')[0]!;

run.done(await main());

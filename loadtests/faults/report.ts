// The reporter of `pnpm test:faults`: at the end of the run it writes docs/reliability.md from what
// each fault recorded (faults injected, requests made, invariants checked, violations) and from the
// test results, with the machine it ran on. A run of some files only (a filter) writes nothing.
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Reporter, TestModule } from 'vitest/node';
import { INVARIANTS } from './invariants';
import type { FaultResult } from './stack';

export const RESULTS_DIR_ENV = 'TENANTDB_FAULT_RESULTS_DIR';
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const FAULT_FILES = /\.fault\.test\.ts$/;

/** A fault whose test shows a known, reported bug (`it.fails`): its violations are expected. */
const KNOWN_BUG = /\(known bug\)/;

export default class FaultReporter implements Reporter {
  async onTestRunEnd(testModules: ReadonlyArray<TestModule>) {
    const dir = process.env[RESULTS_DIR_ENV];
    if (!dir) return;
    const expected = (await readdir(join(REPO_ROOT, 'loadtests/faults'))).filter((f) => FAULT_FILES.test(f));
    const ran = testModules.map((m) => m.moduleId.split('/').pop()!);
    const results: FaultResult[] = [];
    for (const f of await readdir(dir).catch(() => []))
      results.push(JSON.parse(await readFile(join(dir, f), 'utf8')) as FaultResult);
    await rm(dir, { recursive: true, force: true });
    if (!expected.every((f) => ran.includes(f))) {
      process.stdout.write('\nfault suite: not every file ran, docs/reliability.md left as it is\n');
      return;
    }
    const tests = testModules.flatMap((m) => [...m.children.allTests()]);
    const failed = tests.filter((t) => t.result().state === 'failed');
    const skipped = tests.filter((t) => t.result().state === 'skipped');
    results.sort((a, b) => a.order - b.order);
    const requests = results.reduce((n, r) => n + r.requests, 0);
    const held = results.filter((r) => !KNOWN_BUG.test(r.fault));
    const violations = held.reduce((n, r) => n + r.violations.length, 0);
    const knownBugs = results.filter((r) => KNOWN_BUG.test(r.fault));
    const invariants = results.reduce((n, r) => n + r.invariants, 0);
    const cpu = cpus();
    const lines = [
      '# Reliability: the fault-injection suite',
      '',
      'Written by `pnpm test:faults` itself at the end of its run (`loadtests/faults/report.ts`); do not edit by hand.',
      'Each fault breaks a part of the stack `pnpm dev` runs (real processes, local driver) while a',
      'background load allocates and releases through the HTTP API, then the reconciler runs and every',
      'invariant is checked over the catalog, the pool servers, the data directories, Redis and the logs.',
      '',
      `- Run: ${new Date().toISOString()}`,
      `- Machine: ${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown CPU'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB memory, Linux ${release()}, Node ${process.version}; load average ${loadavg()[2]!.toFixed(1)} over the last 15 minutes (a shared machine)`,
      `- Result: **${failed.length === 0 ? 'passed' : `${failed.length} test(s) failed`}** — ${results.length} faults injected, ${requests} requests made, ${invariants} invariant checks, **${violations} violations**${knownBugs.length ? ` (not counting ${knownBugs.length} fault(s) that show a known bug, below)` : ''}${skipped.length ? `, ${skipped.length} test(s) skipped` : ''}`,
      '',
      '| fault | how it is injected | requests | acknowledged allocations | invariants checked | violations | time |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: |',
      ...results.map(
        (r) =>
          `| ${r.fault} | ${r.injected} | ${r.requests} | ${r.acknowledged} | ${r.invariants} | ${r.violations.length} | ${r.seconds} s |`,
      ),
      '',
      'Invariants, checked after every fault:',
      '',
      ...Object.entries(INVARIANTS).map(([k, v]) => `- \`${k}\`: ${v}`),
      '',
    ];
    const found = held.filter((r) => r.violations.length > 0);
    if (found.length) {
      lines.push('Violations:', '');
      for (const r of found) for (const v of r.violations) lines.push(`- ${r.fault}: ${v}`);
      lines.push('');
    }
    if (knownBugs.length) {
      lines.push(
        'Known bugs the faults showed (reported; their tests expect them or are skipped with the reason):',
        '',
      );
      for (const r of knownBugs) for (const v of r.violations) lines.push(`- ${r.fault}: ${v}`);
      lines.push('');
    }
    if (failed.length) {
      lines.push('Failed tests:', '');
      for (const t of failed)
        lines.push(`- ${t.fullName}: ${(t.result().errors?.[0]?.message ?? '').split('\n')[0]}`);
      lines.push('');
    }
    if (skipped.length) {
      lines.push('Skipped tests (each says why in its file):', '');
      for (const t of skipped) lines.push(`- ${t.fullName}`);
      lines.push('');
    }
    await writeFile(join(REPO_ROOT, 'docs/reliability.md'), lines.join('\n'));
    process.stdout.write('\nfault suite: docs/reliability.md written\n');
  }
}

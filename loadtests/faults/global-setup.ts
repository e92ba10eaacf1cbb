// `pnpm test:faults`: a directory each fault writes its result to; the reporter (report.ts) reads
// it at the end of the run and writes docs/reliability.md.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { RESULTS_DIR_ENV } from './report';

export default async function setup(project: TestProject) {
  const dir = await mkdtemp(join(tmpdir(), 'tenantdb-fault-results-'));
  process.env[RESULTS_DIR_ENV] = dir;
  project.provide('faultResultsDir', dir);
}

// Every metric the Grafana dashboard and the Prometheus alert rules read is exported by the running
// processes: the stack is started exactly as `pnpm dev` wires it (database-service, instance-service,
// two database-workers, real catalog Postgres and Redis), /metrics of each is scraped, and each name
// in each expression must be there (a histogram's _bucket/_count/_sum through its histogram). Label
// matchers are checked against the labels the samples carry.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type E2EStack, startE2EStack } from '../services/instance-service/test/e2e-stack';
import { matcherLabels, metricNames } from './promql';

const here = fileURLToPath(new URL('.', import.meta.url));

async function expressions(): Promise<{ where: string; expr: string }[]> {
  const rules = parse(await readFile(resolve(here, 'base/monitoring/tenantdb.rules.yml'), 'utf8'));
  const dashboard = JSON.parse(
    await readFile(resolve(here, 'base/monitoring/tenantdb-dashboard.json'), 'utf8'),
  );
  return [
    ...rules.groups.flatMap((g: { rules: { alert: string; expr: string }[] }) =>
      g.rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })),
    ),
    ...dashboard.panels.flatMap((p: { title: string; targets?: { expr: string }[] }) =>
      (p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, expr: t.expr })),
    ),
  ];
}

interface Exported {
  type: string;
  /** Label names seen on its samples (with the series suffixes of histograms). */
  labels: Set<string>;
}

function parseExposition(text: string, into: Map<string, Exported>): void {
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) {
      if (!into.has(type[1]!)) into.set(type[1]!, { type: type[2]!, labels: new Set() });
      continue;
    }
    const sample = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? /.exec(line);
    if (!sample) continue;
    const base = sample[1]!.replace(/_(bucket|count|sum)$/, '');
    const entry = into.get(sample[1]!) ?? into.get(base);
    for (const l of (sample[2] ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)="/g)) entry?.labels.add(l[1]!);
  }
}

// Labels Prometheus adds to every series (its targets), and the one it renames on collision.
const TARGET_LABELS = new Set(['instance', 'job', 'app', 'pod']);
const RENAMED: Record<string, string> = { exported_job: 'job' };

describe('dashboard and alert rules against /metrics of the running processes', () => {
  let e2e: E2EStack;
  const exported = new Map<string, Exported>();

  beforeAll(async () => {
    e2e = await startE2EStack();
    // One allocation request, so the allocation metrics carry samples (200 or 202: either counts).
    const res = await fetch(`${e2e.stack.urls.databaseService}/api/database/allocate`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${e2e.stack.secrets.allocateToken}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        instance_id: '0b6f3d4e-6a43-4c55-9a4e-2f3f2f1c9a01',
        customer_id: '7d1e2c3b-1111-4222-8333-444455556666',
        plan_tier: 'standard',
      }),
    });
    expect([200, 202]).toContain(res.status);
    const { urls } = e2e.stack;
    for (const url of [urls.databaseService, urls.instanceService, ...urls.workers]) {
      const scrape = await fetch(`${url}/metrics`);
      expect(scrape.status, url).toBe(200);
      expect(scrape.headers.get('content-type')).toMatch(/^text\/plain/);
      parseExposition(await scrape.text(), exported);
    }
  });

  afterAll(async () => {
    await e2e?.close();
  });

  const resolveName = (name: string): Exported | undefined => {
    const direct = exported.get(name);
    if (direct) return direct;
    const m = /^(.*)_(bucket|count|sum)$/.exec(name);
    const base = m ? exported.get(m[1]!) : undefined;
    if (base && (base.type === 'histogram' || (base.type === 'summary' && m![2] !== 'bucket'))) return base;
    return undefined;
  };

  it('exports every metric an expression reads', async () => {
    const exprs = await expressions();
    expect(exprs.length).toBeGreaterThan(15);
    const missing: string[] = [];
    for (const { where, expr } of exprs) {
      const names = metricNames(expr);
      expect(names.length, `${where}: no metric in ${expr}`).toBeGreaterThan(0);
      for (const name of names) if (!resolveName(name)) missing.push(`${where}: ${name}`);
    }
    expect(missing).toEqual([]);
  });

  it('matches only on labels the metrics carry', async () => {
    const wrong: string[] = [];
    for (const { where, expr } of await expressions()) {
      for (const { metric, label } of matcherLabels(expr)) {
        const entry = resolveName(metric);
        const wanted = RENAMED[label] ?? label;
        // A labelled counter with no sample yet shows no labels: nothing to compare.
        if (!entry || entry.labels.size === 0 || TARGET_LABELS.has(label)) continue;
        if (!entry.labels.has(wanted)) wrong.push(`${where}: ${metric} has no label ${label}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('catches a metric that does not exist (the check can fail)', () => {
    expect(metricNames('sum(rate(tenantdb_no_such_metric_total{a="b"}[5m])) by (x)')).toEqual([
      'tenantdb_no_such_metric_total',
    ]);
    expect(resolveName('tenantdb_no_such_metric_total')).toBeUndefined();
    expect(resolveName('tenantdb_allocation_duration_seconds_bucket')).toBeDefined();
    expect(resolveName('tenantdb_warm_databases_bucket')).toBeUndefined();
  });
});

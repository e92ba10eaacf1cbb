// The alert rules: the seven alerts the platform promises, each with a severity, a summary and a
// runbook link to a section of docs/operations.md that exists. (That every metric they read is
// exported: monitoring.e2e.test.ts.)
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const read = (path: string) => readFile(new URL(path, import.meta.url), 'utf8');
/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes. */
const anchor = (heading: string) =>
  heading
    .toLowerCase()
    .replace(/[^a-z0-9 -]/g, '')
    .replace(/ /g, '-');

describe('k8s/base/monitoring/tenantdb.rules.yml', () => {
  it('has every alert, each with a runbook section in docs/operations.md', async () => {
    const rules = parse(await read('./base/monitoring/tenantdb.rules.yml')).groups.flatMap(
      (g: { rules: unknown[] }) => g.rules,
    ) as {
      alert: string;
      expr: string;
      labels: Record<string, string>;
      annotations: Record<string, string>;
    }[];
    expect(rules.map((r) => r.alert).sort()).toEqual(
      [
        'TenantdbBackupDrillFailed',
        'TenantdbBackupsOverdue',
        'TenantdbCatalogDrift',
        'TenantdbNoHealthSweep',
        'TenantdbProvisioningFailures',
        'TenantdbQueueBacklog',
        'TenantdbServerUnhealthy',
        'TenantdbServerStorageNearFull',
        'TenantdbSharedCapacityHigh',
      ].sort(),
    );
    const anchors = new Set(
      [...(await read('../docs/operations.md')).matchAll(/^#+ (.+)$/gm)].map((m) => anchor(m[1]!)),
    );
    for (const rule of rules) {
      expect(['warning', 'critical'], rule.alert).toContain(rule.labels.severity);
      expect(rule.annotations.summary, rule.alert).toBeTruthy();
      const url = rule.annotations.runbook_url!;
      expect(url, rule.alert).toMatch(/^https:\/\/.+\/docs\/operations\.md#[a-z0-9-]+$/);
      expect(anchors.has(url.split('#')[1]!), `${rule.alert}: no section #${url.split('#')[1]}`).toBe(true);
    }
  });

  it('keeps the thresholds the alerts promise', async () => {
    const text = await read('./base/monitoring/tenantdb.rules.yml');
    const rule = (name: string) =>
      parse(text).groups[0].rules.find((r: { alert: string }) => r.alert === name) as {
        expr: string;
        for?: string;
      };
    expect(rule('TenantdbSharedCapacityHigh').expr).toMatch(/> 0\.8\s*$/);
    expect(rule('TenantdbServerUnhealthy').for).toBe('15m');
    expect(rule('TenantdbCatalogDrift').expr).toMatch(/!= 0\s*$/);
    expect(rule('TenantdbNoHealthSweep').expr).toContain('[15m]');
    expect(rule('TenantdbServerStorageNearFull').expr).toMatch(/> 0\.85\s*$/);
  });
});

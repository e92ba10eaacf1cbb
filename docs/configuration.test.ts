// docs/configuration.md is what `pnpm docs:config` renders from the config schemas today, and it
// names every variable each process reads.
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { PROCESSES, type ProcessName, variablesOf } from '../k8s/processes';
import { renderConfigReference } from './config-reference';

describe('docs/configuration.md', () => {
  it('matches the schemas (run `pnpm docs:config` after changing one)', async () => {
    const file = await readFile(new URL('./configuration.md', import.meta.url), 'utf8');
    expect(file).toBe(renderConfigReference());
  });

  it('lists every variable of every process under its heading', () => {
    const text = renderConfigReference();
    for (const name of Object.keys(PROCESSES) as ProcessName[]) {
      const section = text.split(`## ${name}\n`)[1]!.split('\n## ')[0]!;
      for (const variable of variablesOf(name)) expect(section).toContain(`| \`${variable}\` |`);
    }
  });
});

import { describe, expect, it } from 'vitest';
import type { Scenario } from './context';
import { scenarios } from './scenarios';
import { selectScenarios } from './select';

const scenario = (id: string, needs?: string[]): Scenario => ({
  id,
  ...(needs ? { needs } : {}),
  run: () => Promise.reject(new Error('not run here')),
});
const ids = (list: Scenario[]) => list.map((s) => s.id);

describe('selectScenarios (--only)', () => {
  const all = [scenario('a'), scenario('b'), scenario('c', ['a']), scenario('d', ['c']), scenario('e')];

  it('runs everything without --only', () => {
    expect(ids(selectScenarios(all, undefined))).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('adds what the named scenarios need, transitively, in run order', () => {
    expect(ids(selectScenarios(all, 'd'))).toEqual(['a', 'c', 'd']);
    expect(ids(selectScenarios(all, 'E, B'))).toEqual(['b', 'e']);
  });

  it('rejects an unknown id or an empty list, naming the ids there are', () => {
    expect(() => selectScenarios(all, 'b,zz')).toThrow('no scenario zz; there are: a, b, c, d, e');
    expect(() => selectScenarios(all, ',')).toThrow('--only needs scenario ids');
  });

  it('every need of the real scenarios is a scenario that runs before it', () => {
    scenarios.forEach((s, i) => {
      for (const need of s.needs ?? []) expect(ids(scenarios.slice(0, i))).toContain(need);
    });
  });
});

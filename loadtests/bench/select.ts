// `pnpm bench --only a,b`: the scenarios named, and before them the ones whose results they read
// (Scenario.needs, transitively), in the usual run order.
import type { Scenario } from './context';

/**
 * The scenarios to run for `--only <ids>` (comma list, case-insensitive); all of them when
 * `only` is undefined. Throws on an id that no scenario has, listing the ones there are.
 */
export function selectScenarios(all: readonly Scenario[], only: string | undefined): Scenario[] {
  if (only === undefined) return [...all];
  const byId = new Map(all.map((s) => [s.id, s]));
  const names = only
    .split(',')
    .map((n) => n.trim().toLowerCase())
    .filter(Boolean);
  if (names.length === 0)
    throw new Error(`--only needs scenario ids; there are: ${[...byId.keys()].join(', ')}`);
  const unknown = names.filter((n) => !byId.has(n));
  if (unknown.length)
    throw new Error(`no scenario ${unknown.join(', ')}; there are: ${[...byId.keys()].join(', ')}`);

  const wanted = new Set<string>();
  const add = (id: string, neededBy?: string) => {
    if (wanted.has(id)) return;
    const scenario = byId.get(id);
    if (!scenario) throw new Error(`scenario ${neededBy} needs ${id}, which does not exist`);
    wanted.add(id);
    for (const need of scenario.needs ?? []) add(need, id);
  };
  for (const n of names) add(n);
  return all.filter((s) => wanted.has(s.id));
}

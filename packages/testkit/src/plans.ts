// Query plans for tests that assert how a statement runs on a large catalog (an index used, no
// sort or scan of a table), not how long it takes.
import type { CatalogDb } from '@tenantdb/catalog';

export interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

/** A plan node and every node below it. */
export function planNodes(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(planNodes)];
}

/** Every node of a compiled statement's plan. EXPLAIN without ANALYZE plans it and runs none of it. */
export async function planOf(
  db: CatalogDb,
  statement: Extract<Parameters<CatalogDb['executeQuery']>[0], { sql: string }>,
): Promise<PlanNode[]> {
  const { rows } = await db.executeQuery<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>({
    ...statement,
    sql: `EXPLAIN (FORMAT JSON) ${statement.sql}`,
  });
  return planNodes(rows[0]!['QUERY PLAN'][0].Plan);
}

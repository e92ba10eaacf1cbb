// The drain invariant (INVARIANTS.drains), over the catalog: a server marked drained holds
// nothing — no tenant row holding a slot or warm, no move under way off it or onto it, no slot
// counted. A drain that ended too early (a crash between its checks and its status change, a
// move begun onto it) shows here.
import { ACTIVE_MOVE_PHASES, type CatalogDb, SLOT_HOLDING_STATUSES } from '@tenantdb/catalog';

export async function checkDrains(db: CatalogDb): Promise<string[]> {
  const out: string[] = [];
  const drained = await db
    .selectFrom('db_servers')
    .select(['id', 'name', 'current_instances'])
    .where('status', '=', 'drained')
    .execute();
  for (const s of drained) {
    const tenants = await db
      .selectFrom('tenant_databases')
      .select(['db_name', 'status'])
      .where('db_server_id', '=', s.id)
      .where('status', 'in', [...SLOT_HOLDING_STATUSES, 'warm'])
      .execute();
    for (const t of tenants) out.push(`${s.name} is drained but holds ${t.db_name} (${t.status})`);
    const moves = await db
      .selectFrom('tenant_moves')
      .select(['id', 'phase'])
      .where('phase', 'in', ACTIVE_MOVE_PHASES)
      .where((eb) => eb.or([eb('source_server_id', '=', s.id), eb('target_server_id', '=', s.id)]))
      .execute();
    for (const m of moves) out.push(`${s.name} is drained but move ${m.id} (${m.phase}) is under way on it`);
    if (s.current_instances !== 0)
      out.push(`${s.name} is drained but current_instances is ${s.current_instances}`);
  }
  return out;
}

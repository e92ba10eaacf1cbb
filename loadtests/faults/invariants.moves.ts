// The move invariants (INVARIANTS.moves), over the catalog and what each server holds: every move
// is finished or still advancing (touched recently, or waiting out its grace period); a tenant
// moved or being moved is served from the server its row names (its database there, its role
// able to log in) and its copy on the other server is closed (no login) or gone; and of a finished
// move nothing is left — no subscription, publication, replication slot or replication role.
import { ACTIVE_MOVE_PHASES, type CatalogDb, type DbServer } from '@tenantdb/catalog';
import { moveObjectName } from '@tenantdb/pool-server';
import type { SecretBox } from '@tenantdb/secrets';
import type { TenantCredentials } from '@tenantdb/testkit';
import pg from 'pg';

/** A move nobody has touched for this long is stuck (the fault stack's stale bound is 5 s). */
const STUCK_MS = 60_000;

export async function namesHeldByMoves(db: CatalogDb, serverId: string) {
  return db
    .selectFrom('tenant_moves as m')
    .innerJoin('tenant_databases as t', 't.id', 'm.tenant_database_id')
    .select(['t.db_name', 't.db_user'])
    .where('m.phase', 'in', ACTIVE_MOVE_PHASES)
    .where((eb) => eb.or([eb('m.source_server_id', '=', serverId), eb('m.target_server_id', '=', serverId)]))
    .execute();
}

interface ServerView {
  dbs: Set<string>;
  canLogin: Map<string, boolean>;
  subscriptions: string[];
  publications: string[];
  slots: string[];
  moveRoles: string[];
}

async function view(server: DbServer, secrets: SecretBox): Promise<ServerView> {
  const connect = async (database: string) => {
    const client = new pg.Client({
      host: server.host!,
      port: server.port!,
      user: server.admin_user!,
      password: secrets.decrypt(server.admin_password_enc!, server.id),
      database,
      connectionTimeoutMillis: 10_000,
    });
    client.on('error', () => {});
    await client.connect();
    return client;
  };
  const admin = await connect(server.admin_database);
  try {
    const dbs = (await admin.query<{ d: string }>('SELECT datname AS d FROM pg_database')).rows.map(
      (r) => r.d,
    );
    const roles = await admin.query<{ r: string; login: boolean }>(
      'SELECT rolname AS r, rolcanlogin AS login FROM pg_roles',
    );
    const slots = (await admin.query<{ s: string }>('SELECT slot_name AS s FROM pg_replication_slots')).rows;
    const subscriptions = (await admin.query<{ s: string }>('SELECT subname AS s FROM pg_subscription')).rows;
    const publications: string[] = [];
    for (const d of dbs.filter((d) => d.startsWith('tdb_'))) {
      const c = await connect(d).catch(() => undefined);
      if (!c) continue;
      try {
        publications.push(
          ...(await c.query<{ p: string }>('SELECT pubname AS p FROM pg_publication')).rows.map((r) => r.p),
        );
      } finally {
        await c.end().catch(() => {});
      }
    }
    return {
      dbs: new Set(dbs),
      canLogin: new Map(roles.rows.map((r) => [r.r, r.login])),
      subscriptions: subscriptions.map((r) => r.s),
      publications,
      slots: slots.map((r) => r.s),
      moveRoles: roles.rows.filter((r) => r.r.startsWith('tenantdb_move_')).map((r) => r.r),
    };
  } finally {
    await admin.end().catch(() => {});
  }
}

export async function checkMoves(
  db: CatalogDb,
  secrets: SecretBox,
  running: ReadonlyMap<string, DbServer>,
): Promise<string[]> {
  const out: string[] = [];
  const moves = await db
    .selectFrom('tenant_moves as m')
    .innerJoin('tenant_databases as t', 't.id', 'm.tenant_database_id')
    .select([
      'm.id',
      'm.phase',
      'm.updated_at',
      'm.drop_source_after',
      'm.source_server_id',
      'm.target_server_id',
      'm.cut_over_at',
      't.db_server_id',
      't.db_name',
      't.db_user',
      't.status as tenant_status',
    ])
    .execute();
  const views = new Map<string, ServerView>();
  for (const s of running.values()) views.set(s.id, await view(s, secrets));
  const activeObjects = new Set(
    moves
      .filter((m) => (ACTIVE_MOVE_PHASES as readonly string[]).includes(m.phase))
      .map((m) => moveObjectName(m.id)),
  );
  for (const m of moves) {
    const active = (ACTIVE_MOVE_PHASES as readonly string[]).includes(m.phase);
    const waiting = m.phase === 'grace' && (m.drop_source_after?.getTime() ?? 0) > Date.now();
    if (active && !waiting && Date.now() - m.updated_at.getTime() > STUCK_MS)
      out.push(`move ${m.id} stuck in ${m.phase} since ${m.updated_at.toISOString()}`);
    if (m.tenant_status !== 'ready') continue;
    const home = views.get(m.db_server_id);
    const otherId = m.db_server_id === m.source_server_id ? m.target_server_id : m.source_server_id;
    const other = views.get(otherId);
    if (home && !home.dbs.has(m.db_name))
      out.push(`move ${m.id}: ${m.db_name} is not on the server its row names`);
    if (home && m.phase !== 'cutting_over' && home.canLogin.get(m.db_user) !== true)
      out.push(`move ${m.id} (${m.phase}): ${m.db_user} cannot log in where its row says it lives`);
    if (other?.dbs.has(m.db_name) && other.canLogin.get(m.db_user) === true)
      out.push(`move ${m.id} (${m.phase}): ${m.db_name} is open on two servers`);
    if (!active && other?.dbs.has(m.db_name) && m.phase !== 'done')
      out.push(`move ${m.id} ${m.phase}: its copy of ${m.db_name} is left on the other server`);
  }
  const busy = new Set(
    moves
      .filter((m) => (ACTIVE_MOVE_PHASES as readonly string[]).includes(m.phase))
      .flatMap((m) => [m.source_server_id, m.target_server_id]),
  );
  for (const [id, v] of views) {
    const leftovers = [
      ...v.subscriptions.map((x) => `subscription ${x}`),
      ...v.publications.map((x) => `publication ${x}`),
      ...v.slots.map((x) => `slot ${x}`),
      ...v.moveRoles.map((x) => `role ${x}`),
    ]
      // A copy under way has tablesync slots of its own (pg_<subscription>_sync_…) on its source.
      .filter((x) => !activeObjects.has(x.split(' ')[1]!) && !(busy.has(id) && /^slot pg_\d+_sync_/.test(x)));
    for (const l of leftovers) out.push(`${running.get(id)!.name}: ${l} of no move under way`);
  }
  return out;
}

/** The credentials an acknowledged allocation has now: the address of the server it was moved to. */
export async function followMoves(
  db: CatalogDb,
  credentials: TenantCredentials & { db_server_id: string },
  serverId: string,
): Promise<TenantCredentials> {
  if (serverId === credentials.db_server_id) return credentials;
  const server = await db
    .selectFrom('db_servers')
    .select(['host', 'port'])
    .where('id', '=', serverId)
    .executeTakeFirst();
  return {
    ...credentials,
    db_host: server?.host ?? credentials.db_host,
    db_port: server?.port ?? credentials.db_port,
  };
}

// The invariants every fault is judged by, checked over what actually exists: the catalog, the
// pool servers themselves (pg_database, pg_roles as their admin), the local driver's directories
// and postmasters, Redis (schedules and every job hash), and the captured logs of every process.
// Run after the fault is over, the load has stopped and the reconciler has run.
import { readdir, readFile } from 'node:fs/promises';
import {
  type CatalogDb,
  createTlsRepo,
  type DbServer,
  ON_SERVER_STATUSES,
  SLOT_HOLDING_STATUSES,
} from '@tenantdb/catalog';
import type { Queues } from '@tenantdb/jobs';
import { accessStateQuery, ownerRoleOf, TENANT_PREFIX } from '@tenantdb/pool-server';
import { createLocalProvisioner } from '@tenantdb/provisioners';
import type { SecretBox } from '@tenantdb/secrets';
import { canLogin, type TenantCredentials } from '@tenantdb/testkit';
import pg from 'pg';
import { checkDrains } from './invariants.drains';
import { checkMoves, followMoves, namesHeldByMoves } from './invariants.moves';

export const INVARIANTS = {
  capacity: 'no server over capacity',
  slots: 'current_instances equals live allocations',
  logins: 'every acknowledged allocation logs in (and a released one is gone)',
  passwords: "every ready allocation's password logs in (no rotation left unsettled)",
  orphans: 'no orphaned database, role, server, data dir or postmaster',
  'health-schedule': 'one health schedule',
  access:
    "every ready tenant's server agrees with its catalog row (restricted ⇔ not a member of its owner role, suspended ⇔ no login) and none is left pending",
  moves:
    'every move finished or still advancing; a moved tenant served from one server, its other copy closed or gone; nothing of a finished move left (subscription, publication, slot, replication role)',
  drains: 'a drained server holds no tenant (slot-holding or warm), no move under way and no slot',
  secrets: 'no secret in any log or job payload',
} as const;
export type Invariant = keyof typeof INVARIANTS;

export interface Violation {
  invariant: Invariant;
  detail: string;
}

export interface InvariantReport {
  checked: Invariant[];
  violations: Violation[];
}

/** An allocation the API acknowledged (200) with credentials, and whether the client released it. */
export interface Acknowledged {
  instance_id: string;
  credentials: TenantCredentials & { db_server_id: string };
  released: boolean;
}

export interface InvariantSources {
  db: CatalogDb;
  /** Decrypts pool admin and tenant passwords (to log in, and to look for them in logs). */
  secrets: SecretBox;
  /** The local driver's root: every server directory the platform made is under it. */
  serverRoot: string;
  /** Queues on the stack's Redis (its connection is used to read every key). */
  queues: Queues;
  /** Everything every process printed. */
  logs(): string;
  /** Tokens, keys and passwords known outside the catalog (catalog passwords are added here). */
  knownSecrets: Iterable<string>;
  acknowledged: Iterable<Acknowledged>;
}

/** Server statuses where the server runs and holds what the catalog says. */
const ON_SERVER = ['active', 'full', 'cordoned', 'draining', 'maintenance', 'drained'] as const;
/** Payload fields a job may carry: ids (a move's too), a reason, a tenant event's name and time, never a secret. */
const PAYLOAD_FIELDS = new Set([
  'server_id',
  'instance_id',
  'reason',
  'plan_tier',
  'event',
  'occurred_at',
  'delivery_id',
  'move_id',
  'backup_id',
  'restore_id',
]);

export async function checkInvariants(src: InvariantSources): Promise<InvariantReport> {
  const violations: Violation[] = [];
  const add = (invariant: Invariant, detail: string) => violations.push({ invariant, detail });
  // What runs on the machine first: every row is written before its server is made.
  const objects = await createLocalProvisioner({ root: src.serverRoot }).list();
  const entries = await readdir(src.serverRoot).catch(() => []);
  const postmasters = await postmasterDirs(src.serverRoot);
  const servers = await src.db.selectFrom('db_servers').selectAll().execute();
  const live = servers.filter((s) => s.status !== 'decommissioned');

  // capacity + slots: one count per server of the rows holding a slot.
  const holding = await src.db
    .selectFrom('tenant_databases')
    .select(['db_server_id', (eb) => eb.fn.countAll<string>().as('n')])
    .where('status', 'in', SLOT_HOLDING_STATUSES)
    .groupBy('db_server_id')
    .execute();
  const held = new Map(holding.map((h) => [h.db_server_id, Number(h.n)]));
  // A move holds one slot of its own (target before its cut-over, source until the source is dropped).
  const moveSlots = await src.db
    .selectFrom('tenant_moves')
    .select(['slot_server_id', (eb) => eb.fn.countAll<string>().as('n')])
    .where('slot_server_id', 'is not', null)
    .groupBy('slot_server_id')
    .execute();
  for (const m of moveSlots) held.set(m.slot_server_id!, (held.get(m.slot_server_id!) ?? 0) + Number(m.n));
  for (const s of servers) {
    const rows = held.get(s.id) ?? 0;
    if (s.current_instances > s.max_instances || rows > s.max_instances || s.current_instances < 0)
      add(
        'capacity',
        `${s.name}: current_instances ${s.current_instances}, ${rows} live allocations and move slots, max ${s.max_instances}`,
      );
    if (s.current_instances !== rows)
      add(
        'slots',
        `${s.name} (${s.status}): current_instances ${s.current_instances}, live allocations and move slots ${rows}`,
      );
  }

  // logins: acknowledged and kept → logs in with the credentials it was given; released → no live row.
  for (const a of src.acknowledged) {
    const row = await src.db
      .selectFrom('tenant_databases')
      .select(['db_name', 'status', 'db_server_id'])
      .where('instance_id', '=', a.instance_id)
      .where('status', 'in', SLOT_HOLDING_STATUSES)
      .executeTakeFirst();
    if (a.released) {
      if (row) add('logins', `${a.instance_id}: released by the client but still ${row.status}`);
      continue;
    }
    if (row?.status !== 'ready' || row.db_name !== a.credentials.db_name)
      add(
        'logins',
        `${a.instance_id}: acknowledged ${a.credentials.db_name}, catalog has ${row?.db_name} ${row?.status}`,
      );
    else if (!(await canLogin(await followMoves(src.db, a.credentials, row.db_server_id))))
      add(
        'logins',
        `${a.instance_id}: the acknowledged credentials for ${a.credentials.db_name} do not log in`,
      );
  }

  // passwords: the catalog's own answer for every ready allocation on a running server — what a
  // repeat allocate or a credentials read would hand out — logs in; a pending one (a rotation not
  // settled, answered 503) must be gone once reconcile has run.
  const running = new Map(
    live.filter((s) => (ON_SERVER as readonly string[]).includes(s.status)).map((s) => [s.id, s]),
  );
  const ready = await src.db
    .selectFrom('tenant_databases')
    .select([
      'id',
      'instance_id',
      'db_server_id',
      'db_name',
      'db_user',
      'password_enc',
      'password_pending_enc',
      'suspended_at',
    ])
    .where('status', '=', 'ready')
    .where('instance_id', 'is not', null)
    .execute();
  const tls = createTlsRepo(src.db);
  for (const t of ready) {
    const server = running.get(t.db_server_id);
    if (!server?.host || !server.port) continue;
    if (t.suspended_at) continue; // cannot log in, by design (the access invariant checks it)
    if (t.password_pending_enc)
      add('passwords', `${t.instance_id}: a rotation left unsettled (pending password)`);
    // As the answer would: over TLS with the server's fleet CA where it has one (hostssl only).
    const caPem = (await tls.serverTrust(server.id))?.ca_pem;
    const logsIn = await canLogin({
      ...(caPem ? { sslmode: 'verify-full' as const, ssl_root_cert: caPem } : {}),
      db_host: server.host,
      db_port: server.port,
      db_name: t.db_name,
      db_user: t.db_user,
      db_password: src.secrets.decrypt(t.password_enc, t.id),
    });
    if (!logsIn)
      add('passwords', `${t.instance_id}: the catalog's password for ${t.db_name} does not log in`);
  }

  // orphans, on each server: what is there (listed first) against the catalog rows (read after, so
  // a row written meanwhile for a database made meanwhile is never mistaken for an orphan).
  for (const s of live.filter((s) => (ON_SERVER as readonly string[]).includes(s.status))) {
    // Rows that had their database made before the server is listed (a warm row or an allocation
    // written meanwhile has none yet, by design).
    const made = await src.db
      .selectFrom('tenant_databases')
      .select('db_name')
      .where('db_server_id', '=', s.id)
      .where((eb) => eb.or([eb('status', '=', 'ready'), eb('ready_at', 'is not', null)]))
      .where('status', 'in', ON_SERVER_STATUSES)
      .execute();
    let onServer: { dbs: string[]; roles: string[] };
    try {
      onServer = await tenantObjects(s, src.secrets);
    } catch (err) {
      add('orphans', `${s.name} (${s.status}) cannot be inspected: ${(err as Error).message}`);
      continue;
    }
    const rows = await src.db
      .selectFrom('tenant_databases')
      .select(['db_name', 'db_user'])
      .where('db_server_id', '=', s.id)
      .where('status', 'in', ON_SERVER_STATUSES)
      .execute();
    const held = await namesHeldByMoves(src.db, s.id);
    const dbs = new Set([...rows, ...held].map((r) => r.db_name));
    const roles = new Set([...rows, ...held].flatMap((r) => [r.db_user, ownerRoleOf({ dbName: r.db_name })]));
    for (const d of onServer.dbs)
      if (!dbs.has(d)) add('orphans', `${s.name}: database ${d} has no catalog row`);
    for (const r of onServer.roles)
      if (!roles.has(r)) add('orphans', `${s.name}: role ${r} has no catalog row`);
    const there = new Set(onServer.dbs);
    for (const { db_name: d } of made)
      if (!there.has(d)) add('orphans', `${s.name}: catalog row for ${d}, no database`);
  }

  // orphans, on the machine: server directories (the local driver's objects) and postmasters, as
  // listed before the catalog was read (a server made meanwhile has its row by then).
  const liveIds = new Set(live.map((s) => s.id));
  for (const o of objects)
    if (!liveIds.has(o.serverId))
      add('orphans', `server ${o.name}: no live catalog row (running: ${o.running})`);
  const refs = new Set(objects.map((o) => o.ref));
  for (const entry of entries)
    if (!refs.has(entry)) add('orphans', `data dir ${entry}: not a server of the platform (no marker)`);
  for (const dir of postmasters)
    if (!refs.has(dir)) add('orphans', `a postmaster runs in ${dir}, which is not a server`);
  const byRef = new Map(objects.map((o) => [o.ref, o]));
  for (const s of live.filter(
    (s) => s.driver === 'local' && (ON_SERVER as readonly string[]).includes(s.status),
  ))
    if (!byRef.get(s.orchestrator_ref ?? '')?.running)
      add('orphans', `${s.name} is ${s.status} but not running`);

  // access: what the catalog says of each ready tenant (quota state, suspension) is what its
  // server says, and no change is left pending once the reconciler has run.
  const access = await src.db
    .selectFrom('tenant_databases')
    .select(['id', 'db_server_id', 'db_name', 'db_user', 'quota_state', 'suspended_at', 'access_pending'])
    .where('status', '=', 'ready')
    .execute();
  for (const t of access) {
    const server = running.get(t.db_server_id);
    if (!server?.host || !server.port) continue;
    if (t.access_pending) add('access', `${t.db_name}: a quota or suspension change left pending`);
    try {
      const q = accessStateQuery({ dbName: t.db_name, dbUser: t.db_user });
      const rows = await onServerAsAdmin(server, src.secrets, q.text, q.values);
      const on = rows[0] as { can_login: boolean; member: boolean; has_owner: boolean } | undefined;
      if (!on) {
        add('access', `${t.db_name}: no login role on ${server.name}`);
        continue;
      }
      // A tenant still in the arrangement before the owner role (no owner) is not restricted.
      const restricted = on.has_owner && !on.member;
      if (restricted !== (t.quota_state === 'restricted'))
        add(
          'access',
          `${t.db_name}: catalog ${t.quota_state}, server ${restricted ? 'restricted' : 'not restricted'}`,
        );
      if (on.can_login !== (t.suspended_at === null))
        add(
          'access',
          `${t.db_name}: catalog ${t.suspended_at ? 'suspended' : 'not suspended'}, server login ${on.can_login}`,
        );
    } catch (err) {
      add('access', `${t.db_name}: cannot be inspected: ${(err as Error).message}`);
    }
  }
  for (const v of await checkMoves(src.db, src.secrets, running)) add('moves', v);
  for (const v of await checkDrains(src.db)) add('drains', v);

  // one health schedule, and at most one sweep waiting for its turn.
  const monitoring = src.queues.queue('monitoring');
  const schedules = (await monitoring.getJobSchedulers()).filter((j) => j.name === 'health-check-all');
  if (schedules.length !== 1) add('health-schedule', `${schedules.length} health-check-all schedules`);
  const pending = (await monitoring.getJobs(['delayed', 'waiting', 'prioritized'])).filter(
    (j) => j?.name === 'health-check-all',
  );
  if (pending.length > 1) add('health-schedule', `${pending.length} health-check-all jobs waiting`);

  // secrets: every token/key given, every password the catalog holds (pool admins, tenants).
  const secrets = new Set([...src.knownSecrets].filter((s) => s.length >= 8));
  for (const s of servers)
    if (s.admin_password_enc) secrets.add(src.secrets.decrypt(s.admin_password_enc, s.id));
  for (const t of await src.db
    .selectFrom('tenant_databases')
    .select(['id', 'password_enc', 'password_pending_enc'])
    .execute()) {
    secrets.add(src.secrets.decrypt(t.password_enc, t.id));
    if (t.password_pending_enc) secrets.add(src.secrets.decrypt(t.password_pending_enc, t.id));
  }
  for (const a of src.acknowledged) secrets.add(a.credentials.db_password);
  const logs = src.logs();
  for (const secret of secrets)
    if (logs.includes(secret)) add('secrets', `a secret (${secret.slice(0, 4)}…) is in the logs`);
  const redis = await redisContents(src.queues);
  for (const secret of secrets)
    if (redis.text.includes(secret)) add('secrets', `a secret (${secret.slice(0, 4)}…) is in Redis`);
  for (const job of redis.jobs) {
    const extra = Object.keys(job.data).filter((k) => !PAYLOAD_FIELDS.has(k));
    if (extra.length) add('secrets', `job ${job.key} carries ${extra.join(', ')}`);
  }

  return { checked: Object.keys(INVARIANTS) as Invariant[], violations };
}

/** `fn` on a connection of its own to the server as its admin, closed after. */
async function withAdmin<T>(server: DbServer, secrets: SecretBox, fn: (c: pg.Client) => Promise<T>) {
  const client = new pg.Client({
    host: server.host!,
    port: server.port!,
    user: server.admin_user!,
    password: secrets.decrypt(server.admin_password_enc!, server.id),
    database: server.admin_database,
    connectionTimeoutMillis: 10_000,
  });
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

const onServerAsAdmin = (server: DbServer, secrets: SecretBox, text: string, values: unknown[]) =>
  withAdmin(server, secrets, async (c) => (await c.query(text, values)).rows);

export function tenantObjects(server: DbServer, secrets: SecretBox) {
  return withAdmin(server, secrets, async (client) => {
    const names = async (sql: string) =>
      (await client.query<{ name: string }>(sql, [TENANT_PREFIX])).rows.map((r) => r.name);
    return {
      dbs: await names('SELECT datname AS name FROM pg_database WHERE starts_with(datname, $1)'),
      roles: await names('SELECT rolname AS name FROM pg_roles WHERE starts_with(rolname, $1)'),
    };
  });
}

/** Directories (names under root) in which a postmaster runs: `postgres -D <root>/<name>/data`. */
async function postmasterDirs(root: string): Promise<string[]> {
  const dirs: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const d = args.indexOf('-D');
    const dataDir = d >= 0 ? args[d + 1] : undefined;
    if (dataDir?.startsWith(`${root}/`)) dirs.push(dataDir.slice(root.length + 1).split('/')[0]!);
  }
  return dirs;
}

/** Every value of every key under the queues' prefix, and the payload of every job hash. */
async function redisContents(queues: Queues) {
  const redis = queues.connection;
  const prefix = queues.queue('monitoring').opts.prefix ?? 'bull';
  const parts: string[] = [];
  const jobs: { key: string; data: Record<string, unknown> }[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
    cursor = next;
    for (const key of keys) {
      const type = await redis.type(key);
      if (type === 'string') parts.push((await redis.get(key)) ?? '');
      else if (type === 'list') parts.push(...(await redis.lrange(key, 0, -1)));
      else if (type === 'set') parts.push(...(await redis.smembers(key)));
      else if (type === 'zset') parts.push(...(await redis.zrange(key, 0, -1)));
      else if (type === 'stream')
        for (const [, fields] of await redis.xrange(key, '-', '+')) parts.push(...fields);
      else if (type === 'hash') {
        const hash = await redis.hgetall(key);
        parts.push(...Object.entries(hash).flat());
        if (hash.name !== undefined && hash.data !== undefined) {
          try {
            jobs.push({ key, data: JSON.parse(hash.data) as Record<string, unknown> });
          } catch {
            jobs.push({ key, data: { unparseable: hash.data } });
          }
        }
      }
    }
  } while (cursor !== '0');
  return { text: parts.join('\n'), jobs };
}

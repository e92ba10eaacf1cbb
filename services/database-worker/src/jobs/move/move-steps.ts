// The work a move does on its two servers, one function per step, each safe to repeat: what an
// earlier attempt made is found by its name (moveObjectName) and either kept or made again.
// Phases and their order are move-tenant.ts; the SQL is @tenantdb/pool-server's move.sql.ts.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DbServer, Plan, TenantDatabase, TenantMove } from '@tenantdb/catalog';
import { PermanentJobError } from '@tenantdb/jobs';
import {
  blockWritesStatements,
  type ClientTools,
  createTenantStatements,
  dropSubscriptionStatements,
  dumpAndRestore,
  dumpSchema,
  inspectServer,
  listArchive,
  type PoolServerTarget,
  PRIMARY_KEYS,
  restoreArchive,
  splitPrimaryKeys,
  TABLES_WITHOUT_IDENTITY,
  TENANT_SESSIONS,
  type TenantNames,
} from '@tenantdb/pool-server';
import type pg from 'pg';
import type { WorkerDeps } from '../../context';
import { dumpConnection, toolsFor } from '../server-tools';
import { createReplicationSteps, isMissingDatabase, type ServerAccess } from './move-replication';

export interface MoveParts {
  move: TenantMove;
  tenant: TenantDatabase;
  source: DbServer;
  target: DbServer;
  names: TenantNames;
  /** Publication, subscription, slot and replication role of this move. */
  object: string;
  /** A plan change's plan (tenant_moves.plan_tier): the target role gets its connection limit. */
  plan?: Plan;
}

type StepDeps = Pick<
  WorkerDeps,
  'connections' | 'secrets' | 'tls' | 'tenantOps' | 'tenantAccess' | 'clientTools' | 'tenants'
>;

export function createMoveSteps(deps: StepDeps) {
  const { connections, tls, tenantOps, tenantAccess, tenants } = deps;
  /**
   * Opens the tenant's role on a server as the catalog says it is now (read at the call, so a
   * suspension or restriction decided during the move is seen): restricted first, while it still
   * cannot log in; a suspended tenant stays NOLOGIN. A move carries both over, either way it goes.
   */
  const openAsCatalogSays = async (server: DbServer, p: MoveParts) => {
    const row = await tenants.findById(p.tenant.id);
    const restricted = row?.quota_state === 'restricted';
    const suspended = row !== undefined && row.suspended_at !== null;
    // The restriction with the login left as it is (a repeat after the cut-over must not end the
    // sessions the target serves), then the login.
    const { canLogin } = await tenantAccess.read(server, p.names);
    await tenantAccess.apply(server, p.names, { restricted, suspended: !canLogin });
    if (suspended === canLogin) await tenantAccess.apply(server, p.names, { restricted, suspended });
  };
  const inDb = (server: DbServer, database: string): PoolServerTarget => ({
    ...server,
    admin_database: database,
  });
  const onDb = <T>(server: DbServer, database: string, fn: (c: pg.Client) => Promise<T>) =>
    connections.withOwnClient(inDb(server, database), fn);
  const run = (server: DbServer, statements: string[]) =>
    connections.withClient(server, async (c) => {
      for (const s of statements) await c.query(s);
    });
  const dumpConn = (server: DbServer, dbname: string) => dumpConnection(deps, server, dbname);

  /** The archive's TOC split into the primary keys and the rest (move.sql.ts splitPrimaryKeys). */
  const access: ServerAccess = { onDb, run, connections, tls };

  async function primaryKeyEntries(p: MoveParts, t: ClientTools, archive: string) {
    const { rows } = await onDb(p.source, p.names.dbName, (c) => c.query<{ key: string }>(PRIMARY_KEYS));
    return splitPrimaryKeys(await listArchive(t, archive), new Set(rows.map((r) => r.key)));
  }

  const tools = async (source: DbServer): Promise<ClientTools> => (await toolsFor(deps, source)).tools;

  /** Runs `fn` with a private directory for archives and listings, removed afterwards. */
  async function withWorkDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(join(tmpdir(), 'tenantdb-move-'));
    try {
      return await fn(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  const steps = {
    tools,
    ...createReplicationSteps(access),

    /**
     * Which way the data goes: logical replication when both servers run wal_level=logical and
     * every table has a primary key or REPLICA IDENTITY FULL; dump/restore otherwise (and why).
     */
    async chooseMethod(p: MoveParts): Promise<{ method: 'logical' | 'dump'; reason: string }> {
      const [src, dst] = await Promise.all([
        inspectServer(connections, p.source),
        inspectServer(connections, p.target),
      ]);
      if (!src.canManageTenants || !dst.canManageTenants)
        throw new PermanentJobError('admin login cannot manage tenants');
      if (dst.major < src.major)
        throw new PermanentJobError(
          `the target runs PostgreSQL ${dst.major}, older than the source's ${src.major}`,
        );
      if (!src.logicalReplication || !dst.logicalReplication)
        return {
          method: 'dump',
          reason: `wal_level is not logical on the ${src.logicalReplication ? 'target' : 'source'}`,
        };
      const { rows } = await onDb(p.source, p.names.dbName, (c) =>
        c.query<{ name: string }>(TABLES_WITHOUT_IDENTITY),
      );
      if (rows.length > 0) {
        const list = rows
          .slice(0, 5)
          .map((r) => r.name)
          .join(', ');
        return {
          method: 'dump',
          reason: `tables without a primary key or replica identity: ${list}${rows.length > 5 ? ', …' : ''}`,
        };
      }
      return { method: 'logical', reason: 'every table has a primary key or replica identity' };
    },

    /**
     * The tenant's roles and database on the target, arranged as every tenant's is
     * (tenant-access.sql.ts: a NOLOGIN owner role owns the database; the login role keeps its name
     * and the source's SCRAM verifier, NOLOGIN until the cut-over), made afresh: whatever an
     * earlier attempt left there is dropped first. A source tenant from before the owner role is
     * brought to that arrangement first (idempotent), so its objects keep one owner on the copy.
     */
    async prepareTarget(p: MoveParts): Promise<void> {
      if ((await tenantAccess.migrate(p.source, p.names)) === 'gone')
        throw new PermanentJobError('the tenant role is gone from the source');
      const verifier = await connections.withClient(p.source, async (c) => {
        const { rows } = await c.query<{ v: string | null }>(
          'SELECT rolpassword AS v FROM pg_authid WHERE rolname = $1',
          [p.names.dbUser],
        );
        return rows[0]?.v;
      });
      if (!verifier?.startsWith('SCRAM-SHA-256$'))
        throw new PermanentJobError('the tenant role has no SCRAM-SHA-256 password on the source');
      await steps.undoTarget(p);
      const limit = p.plan?.connection_limit ?? p.tenant.connection_limit ?? 20;
      await run(
        p.target,
        createTenantStatements({
          ...p.names,
          passwordVerifier: verifier,
          connectionLimit: limit,
          login: false,
        }),
      );
    },

    /** Schema before the data (pre-data and the primary keys); returns the tools used. */
    async copyPreData(p: MoveParts): Promise<void> {
      const t = await tools(p.source);
      await withWorkDir(async (dir) => {
        const archive = join(dir, 'schema.dump');
        await dumpSchema(t, dumpConn(p.source, p.names.dbName), archive);
        await restoreArchive(t, dumpConn(p.target, p.names.dbName), archive, { section: 'pre-data' });
        const keys = await primaryKeyEntries(p, t, archive);
        await writeFile(join(dir, 'keys.list'), keys.keys);
        await restoreArchive(t, dumpConn(p.target, p.names.dbName), archive, {
          listFile: join(dir, 'keys.list'),
        });
      });
    },

    /**
     * Indexes, foreign keys, triggers: built after the initial copy, in one transaction (a crash
     * leaves none of them, so a repeat starts clean). Skipped when the target already has every
     * index the source has (an earlier attempt committed them).
     */
    async copyPostData(p: MoveParts): Promise<void> {
      const count = (server: DbServer) =>
        onDb(server, p.names.dbName, async (c) => {
          const { rows } = await c.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
          );
          return rows[0]!.n;
        });
      if ((await count(p.target)) >= (await count(p.source))) return;
      const t = await tools(p.source);
      await withWorkDir(async (dir) => {
        const archive = join(dir, 'schema.dump');
        await dumpSchema(t, dumpConn(p.source, p.names.dbName), archive);
        await writeFile(join(dir, 'rest.list'), (await primaryKeyEntries(p, t, archive)).rest);
        await restoreArchive(t, dumpConn(p.target, p.names.dbName), archive, {
          section: 'post-data',
          listFile: join(dir, 'rest.list'),
          singleTransaction: true,
        });
      });
    },

    /** The whole database by pg_dump | pg_restore (writes blocked by the caller). Bytes piped. */
    async dumpAll(p: MoveParts): Promise<number> {
      const t = await tools(p.source);
      return dumpAndRestore(t, dumpConn(p.source, p.names.dbName), dumpConn(p.target, p.names.dbName));
    },

    /** No login, every session ended and gone: nothing the tenant does reaches the source any more. */
    async blockWrites(p: MoveParts): Promise<void> {
      await run(p.source, blockWritesStatements(p.names.dbUser));
      // A backend already past its login check when the role lost LOGIN shows in pg_stat_activity
      // only a moment later: none may be seen on two looks in a row, and one that is seen is ended
      // too (a write of a session missed here lands after the LSN the cut-over waits for).
      await connections.withClient(p.source, async (c) => {
        for (let i = 0, quiet = 0; ; i++) {
          const { rows } = await c.query<{ n: number }>(TENANT_SESSIONS, [p.names.dbUser]);
          if (rows[0]!.n === 0) {
            if (++quiet >= 2) return;
          } else {
            quiet = 0;
            for (const statement of blockWritesStatements(p.names.dbUser)) await c.query(statement);
          }
          if (i >= 100) throw new Error('sessions of the tenant are still open on the source');
          await new Promise((r) => setTimeout(r, 50));
        }
      });
    },
    allowSourceLogins: (p: MoveParts) => openAsCatalogSays(p.source, p),
    openTarget: (p: MoveParts) => openAsCatalogSays(p.target, p),

    /** Everything of the move on the target: its replication objects, the database and the role. */
    async undoTarget(p: MoveParts): Promise<void> {
      await onDb(p.target, p.names.dbName, async (c) => {
        for (const s of dropSubscriptionStatements(p.object)) await c.query(s);
      }).catch((err) => {
        if (!isMissingDatabase(err)) throw err;
      });
      await tenantOps.drop(p.target, p.names);
    },

    /** The source's copy of the tenant, once its grace period is over. */
    dropSource: (p: MoveParts) => tenantOps.drop(p.source, p.names),
  };
  return steps;
}

export type MoveSteps = ReturnType<typeof createMoveSteps>;

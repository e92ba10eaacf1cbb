// Tenant databases on a pool server: create, drop, set password. Each call is idempotent or
// cleans up after itself, because callers retry and compensate.
import { scramSha256Verifier } from '@tenantdb/secrets';
import type { PoolConnections, PoolServerTarget } from './connections';
import { dropLockKey, withServerLock } from './locks';
import { HARDEN_POOL_STATEMENTS, setPasswordStatement, TENANT_PREFIX, type TenantNames } from './tenant.sql';
import {
  claimWarmBatch,
  createTenantStatements,
  createWarmStatements,
  dropLeftoverStatements,
  dropTenantStatements,
  type Guardrails,
} from './tenant-access.sql';

type NewTenant = TenantNames & {
  password: string;
  connectionLimit: number;
  guardrails?: Guardrails | undefined;
};

export interface TenantOps {
  create(server: PoolServerTarget, t: NewTenant): Promise<void>;
  /** A database ahead of demand; its role cannot log in until claimed. */
  createWarm(server: PoolServerTarget, t: TenantNames & { password: string }): Promise<void>;
  /** Turns a warm database into the tenant's: password, login, connection limit. */
  claim(server: PoolServerTarget, t: NewTenant): Promise<void>;
  drop(server: PoolServerTarget, t: TenantNames): Promise<void>;
  /**
   * Drops what is left of a tenant no catalog row accounts for (reconcile): its database, its
   * role, or both, under the same lock as drop, so a release of it running meanwhile is waited
   * for rather than met half way.
   */
  dropLeftovers(
    server: PoolServerTarget,
    t: TenantNames,
    left: { database: boolean; role: boolean },
  ): Promise<void>;
  setPassword(server: PoolServerTarget, dbUser: string, password: string): Promise<void>;
}

export function createTenantOps(connections: PoolConnections): TenantOps {
  /** Runs statements in order; on failure drops whatever they made. */
  const runOrUndo = (server: PoolServerTarget, t: TenantNames, statements: string[]) =>
    connections.withClient(server, async (client) => {
      try {
        for (const statement of statements) await client.query(statement);
      } catch (err) {
        // Leave nothing half-made behind; the caller decides what the failure means.
        for (const statement of dropTenantStatements(t)) await client.query(statement).catch(() => {});
        throw err;
      }
    });

  const ops: TenantOps = {
    async create(server, t) {
      const passwordVerifier = await scramSha256Verifier(t.password);
      await runOrUndo(server, t, createTenantStatements({ ...t, passwordVerifier }));
    },
    async createWarm(server, t) {
      const passwordVerifier = await scramSha256Verifier(t.password);
      await runOrUndo(server, t, createWarmStatements({ ...t, passwordVerifier }));
    },
    async claim(server, t) {
      const passwordVerifier = await scramSha256Verifier(t.password);
      await connections.withClient(server, (client) =>
        client.query(claimWarmBatch({ ...t, passwordVerifier })),
      );
    },
    drop: (server, t) => ops.dropLeftovers(server, t, { database: true, role: true }),
    async dropLeftovers(server, t, left) {
      await connections.withClient(server, async (client) => {
        // Two drops of one tenant at once (a client's retry racing the first release, or reconcile
        // repairing a release that looks stuck) must not run side by side: Postgres fails the
        // loser with "tuple concurrently updated" (ALTER ROLE … NOLOGIN) or "could not find tuple
        // for role" (DROP ROLE) instead of IF EXISTS doing nothing (test/drop-race.test.ts). A
        // session lock on the role's name serializes them (DROP DATABASE cannot run in a
        // transaction, so not a transaction lock); the second then finds nothing left to drop.
        await withServerLock(client, dropLockKey(t.dbUser), async () => {
          for (const statement of dropLeftoverStatements(t, left)) await client.query(statement);
        });
      });
    },
    async setPassword(server, dbUser, password) {
      const verifier = await scramSha256Verifier(password);
      await connections.withClient(server, (client) => client.query(setPasswordStatement(dbUser, verifier)));
    },
  };
  return ops;
}

export interface ServerFacts {
  postgresVersion: string;
  versionNum: number;
  /** server_version_num / 10000 (PostgreSQL 10 and newer). */
  major: number;
  /** wal_level = logical: a move source or target by logical replication. */
  logicalReplication: boolean;
  canManageTenants: boolean;
}

/** Who and what the admin login is on a server: used when a server joins the fleet. */
export async function inspectServer(
  connections: PoolConnections,
  server: PoolServerTarget,
): Promise<ServerFacts> {
  return connections.withOwnClient(server, async (client) => {
    const { rows } = await client.query<{ version: string; num: string; wal: string; can: boolean }>(
      `SELECT current_setting('server_version') AS version,
              current_setting('server_version_num') AS num,
              current_setting('wal_level') AS wal,
              (r.rolsuper OR (r.rolcreatedb AND r.rolcreaterole)) AS can
         FROM pg_roles r WHERE r.rolname = current_user`,
    );
    const row = rows[0]!;
    return {
      postgresVersion: row.version,
      versionNum: Number(row.num),
      major: Math.floor(Number(row.num) / 10_000),
      logicalReplication: row.wal === 'logical',
      canManageTenants: row.can,
    };
  });
}

/** The databases and roles with the tenant prefix on a server, read on a connection of its own. */
export async function listTenantObjects(
  connections: PoolConnections,
  server: PoolServerTarget,
): Promise<{ databases: string[]; roles: string[] }> {
  return connections.withOwnClient(server, async (client) => {
    const databases = await client.query<{ name: string }>(
      'SELECT datname AS name FROM pg_database WHERE starts_with(datname, $1)',
      [TENANT_PREFIX],
    );
    const roles = await client.query<{ name: string }>(
      'SELECT rolname AS name FROM pg_roles WHERE starts_with(rolname, $1)',
      [TENANT_PREFIX],
    );
    return { databases: databases.rows.map((r) => r.name), roles: roles.rows.map((r) => r.name) };
  });
}

/** Runs once per server on a one-off connection, so no pool is cached for a mere candidate. */
export async function hardenPool(connections: PoolConnections, server: PoolServerTarget): Promise<void> {
  await connections.withOwnClient(server, async (client) => {
    for (const statement of HARDEN_POOL_STATEMENTS) await client.query(statement);
  });
}

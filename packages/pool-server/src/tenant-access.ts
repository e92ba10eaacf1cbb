// A tenant's access on its server brought to what the catalog says: restricted or not,
// suspended or not, its plan's connection limit and guardrails, and the migration of tenants
// made before the owner role (tenant-access.sql.ts has the arrangement). Every call reads the
// server first and changes only what differs, so a repeat after a crash is harmless.
import type { PoolConnections, PoolServerTarget } from './connections';
import type { TenantNames } from './tenant.sql';
import {
  type AccessOnServer,
  accessStateQuery,
  endSessionsStatement,
  type Guardrails,
  liftBatch,
  migrateArrangementBatch,
  planSettingsBatch,
  restrictBatch,
  resumeStatement,
  suspendStatement,
} from './tenant-access.sql';

export interface DesiredAccess {
  restricted: boolean;
  suspended: boolean;
}

export type AccessResult =
  | { kind: 'applied'; changed: string[]; sessionsEnded: number }
  /** The login role is not on the server (released, or never made): nothing to do. */
  | { kind: 'gone' };

export interface TenantAccess {
  read(server: PoolServerTarget, t: TenantNames): Promise<AccessOnServer>;
  apply(server: PoolServerTarget, t: TenantNames, desired: DesiredAccess): Promise<AccessResult>;
  /** Moves a legacy tenant (login role owns everything) to the owner-role arrangement. */
  migrate(server: PoolServerTarget, t: TenantNames): Promise<'migrated' | 'already' | 'gone'>;
  applyPlan(
    server: PoolServerTarget,
    t: TenantNames,
    plan: { connectionLimit: number; guardrails: Guardrails },
  ): Promise<void>;
}

export function createTenantAccess(connections: PoolConnections): TenantAccess {
  const read = async (server: PoolServerTarget, t: TenantNames): Promise<AccessOnServer> =>
    connections.withClient(server, async (client) => {
      const q = accessStateQuery(t);
      const { rows } = await client.query<{ can_login: boolean; has_owner: boolean; member: boolean }>(
        q.text,
        q.values,
      );
      const row = rows[0];
      if (!row) return { exists: false, canLogin: false, hasOwner: false, member: false };
      return { exists: true, canLogin: row.can_login, hasOwner: row.has_owner, member: row.member };
    });

  /** Work inside the tenant's own database, on a connection of its own. */
  const inTenantDb = (server: PoolServerTarget, t: TenantNames, text: string) =>
    connections.withOwnClient(server, (client) => client.query(text), { database: t.dbName });

  const endSessions = (server: PoolServerTarget, t: TenantNames) =>
    connections.withClient(server, async (client) => {
      const { rows } = await client.query<{ ended: number }>(endSessionsStatement(t.dbUser));
      return rows[0]?.ended ?? 0;
    });

  async function migrate(server: PoolServerTarget, t: TenantNames): Promise<'migrated' | 'already' | 'gone'> {
    const state = await read(server, t);
    if (!state.exists) return 'gone';
    if (state.hasOwner) return 'already';
    await inTenantDb(server, t, migrateArrangementBatch(t));
    // Sessions opened before run as the login role, which owns nothing now; new ones start as
    // the owner. Ended so that the tenant's next connection works as before.
    await endSessions(server, t);
    return 'migrated';
  }

  return {
    read,
    migrate,

    async apply(server, t, desired) {
      let state = await read(server, t);
      if (!state.exists) return { kind: 'gone' };
      const changed: string[] = [];
      if (!state.hasOwner) {
        await migrate(server, t);
        changed.push('migrated');
        state = await read(server, t);
      }
      if (desired.suspended && state.canLogin) {
        await connections.withClient(server, (c) => c.query(suspendStatement(t.dbUser)));
        changed.push('suspended');
      } else if (!desired.suspended && !state.canLogin) {
        await connections.withClient(server, (c) => c.query(resumeStatement(t.dbUser)));
        changed.push('resumed');
      }
      if (desired.restricted && state.member) {
        await inTenantDb(server, t, restrictBatch(t));
        changed.push('restricted');
      } else if (!desired.restricted && !state.member) {
        await connections.withClient(server, (c) => c.query(liftBatch(t)));
        changed.push('lifted');
      }
      // Always when restricted or suspended, not only on a change: a crash between the change
      // and this would otherwise leave a session running as the owner, and the repeat (the
      // reconciler) would see nothing to change.
      const sessionsEnded =
        desired.restricted || desired.suspended || changed.includes('lifted')
          ? await endSessions(server, t)
          : 0;
      return { kind: 'applied', changed, sessionsEnded };
    },

    async applyPlan(server, t, plan) {
      await connections.withClient(server, (c) =>
        c.query(planSettingsBatch(t, plan.connectionLimit, plan.guardrails)),
      );
    },
  };
}

// Per-tenant usage, the quota ladder's state and suspension (tenant_databases columns of
// migration 0015). The catalog is the truth: a transition is written here first with
// access_pending, the server is brought in line after, and access_pending cleared only then, so a
// crash in between leaves a row the reconciler finishes (findAccessPending).
import { sql } from 'kysely';
import type { CatalogDb, Executor } from '../db';
import type { AuditEvent, QuotaState, TenantDatabase } from '../types';
import { createTenantEventsRepo, type TenantEventRecord } from './tenant-events.repo';

export type UsageRepo = ReturnType<typeof createUsageRepo>;

/** One tenant's figures from one sample. */
export interface UsageSample {
  id: string;
  sizeBytes: number;
  connections: number;
}

/** A tenant as the ladder judges it: its state, latest figures and its plan's quota. */
export interface LadderRow {
  id: string;
  instance_id: string | null;
  db_server_id: string;
  db_name: string;
  db_user: string;
  quota_state: QuotaState;
  size_bytes: number | null;
  over_quota_since: Date | null;
  suspended_at: Date | null;
  storage_quota_mb: number | null;
  quota_warn_fraction: string;
  quota_lift_fraction: string;
  quota_grace_seconds: number;
}

/** What the server must say for a row (restricted, suspended): what access sync applies. */
export type AccessRow = Pick<
  TenantDatabase,
  'id' | 'instance_id' | 'db_server_id' | 'db_name' | 'db_user' | 'quota_state' | 'suspended_at'
>;

const ACCESS_FIELDS = [
  'id',
  'instance_id',
  'db_server_id',
  'db_name',
  'db_user',
  'quota_state',
  'suspended_at',
] as const;

export function createUsageRepo(db: CatalogDb) {
  const events = createTenantEventsRepo(db);
  /** The ladder's view of tenants (rows joined to their plan). */
  const ladderRows = (trx: Executor) =>
    trx
      .selectFrom('tenant_databases as t')
      .leftJoin('plans as p', 'p.plan_tier', 't.plan_tier')
      .select([
        't.id',
        't.instance_id',
        't.db_server_id',
        't.db_name',
        't.db_user',
        't.quota_state',
        't.size_bytes',
        't.over_quota_since',
        't.suspended_at',
        'p.storage_quota_mb',
        sql<string>`coalesce(p.quota_warn_fraction, 1)`.as('quota_warn_fraction'),
        sql<string>`coalesce(p.quota_lift_fraction, 1)`.as('quota_lift_fraction'),
        sql<number>`coalesce(p.quota_grace_seconds, 0)`.as('quota_grace_seconds'),
      ]);

  return {
    /** The ready tenants of a server, by name: what one sample measures. */
    listToSample(serverId: string, trx: Executor = db): Promise<{ id: string; db_name: string }[]> {
      return trx
        .selectFrom('tenant_databases')
        .select(['id', 'db_name'])
        .where('db_server_id', '=', serverId)
        .where('status', '=', 'ready')
        .execute();
    },

    /**
     * Stores a server's sample in one statement: the figures, the time, and over_quota_since
     * (kept while over the plan's quota, cleared under it). Returns the ladder's view of the rows.
     */
    async recordSamples(samples: readonly UsageSample[], trx: Executor = db): Promise<LadderRow[]> {
      if (samples.length === 0) return [];
      await sql`
        UPDATE tenant_databases t
           SET size_bytes = v.size, active_connections = v.conns, usage_sampled_at = now(),
               over_quota_since = CASE
                 WHEN v.size >= (SELECT p.storage_quota_mb::bigint * 1048576 FROM plans p WHERE p.plan_tier = t.plan_tier)
                 THEN coalesce(t.over_quota_since, now()) END
          FROM unnest(${samples.map((s) => s.id)}::uuid[], ${samples.map((s) => s.sizeBytes)}::bigint[],
                      ${samples.map((s) => s.connections)}::int[]) AS v(id, size, conns)
         WHERE t.id = v.id AND t.status = 'ready'`.execute(trx);
      return ladderRows(trx)
        .where(
          't.id',
          'in',
          samples.map((s) => s.id),
        )
        .where('t.status', '=', 'ready')
        .execute();
    },

    /** One tenant as the ladder judges it (after a plan change). */
    findLadderRow(id: string, trx: Executor = db): Promise<LadderRow | undefined> {
      return ladderRows(trx).where('t.id', '=', id).where('t.status', '=', 'ready').executeTakeFirst();
    },

    /**
     * One rung of the ladder, with its audit event and the portal's event (the outbox), in one
     * transaction. Only from `from` (a concurrent transition wins, this one is then undefined).
     * access_pending is set when the server must change (into or out of restricted).
     */
    transitionQuota(
      id: string,
      from: QuotaState,
      to: QuotaState,
      audit: (row: AccessRow & { quota_state_at: Date }) => AuditEvent,
      event?: (row: AccessRow & { quota_state_at: Date }) => TenantEventRecord | undefined,
    ): Promise<(AccessRow & { quota_state_at: Date }) | undefined> {
      const serverChanges = from === 'restricted' || to === 'restricted';
      return db.transaction().execute(async (trx) => {
        const row = await trx
          .updateTable('tenant_databases')
          .set({
            quota_state: to,
            quota_state_at: sql<Date>`now()`,
            updated_at: sql<Date>`now()`,
            ...(serverChanges ? { access_pending: true } : {}),
          })
          .where('id', '=', id)
          .where('quota_state', '=', from)
          .where('status', '=', 'ready')
          .returning([...ACCESS_FIELDS, 'quota_state_at'])
          .executeTakeFirst();
        if (!row) return undefined;
        const moved = { ...row, quota_state_at: row.quota_state_at! };
        await trx.insertInto('audit_events').values(audit(moved)).execute();
        const told = event?.(moved);
        if (told) await events.record(told, trx);
        return moved;
      });
    },

    /**
     * Suspends or resumes a ready tenant (access_pending until the server has it), audited, with
     * the portal's event (the outbox) when it changed.
     */
    setSuspended(
      id: string,
      suspended: boolean,
      audit: (row: AccessRow) => AuditEvent,
      event?: (row: AccessRow & { changed_at: Date }) => TenantEventRecord | undefined,
    ): Promise<{ row: AccessRow; changed: boolean; event?: TenantEventRecord } | undefined> {
      return db.transaction().execute(async (trx) => {
        const current = await trx
          .selectFrom('tenant_databases')
          .select(ACCESS_FIELDS)
          .where('id', '=', id)
          .where('status', '=', 'ready')
          .forUpdate()
          .executeTakeFirst();
        if (!current) return undefined;
        if ((current.suspended_at !== null) === suspended) return { row: current, changed: false };
        const row = await trx
          .updateTable('tenant_databases')
          .set({
            suspended_at: suspended ? sql<Date>`now()` : null,
            access_pending: true,
            updated_at: sql<Date>`now()`,
          })
          .where('id', '=', id)
          .returning([...ACCESS_FIELDS, 'updated_at'])
          .executeTakeFirstOrThrow();
        const { updated_at, ...changed } = row;
        await trx.insertInto('audit_events').values(audit(changed)).execute();
        const told = event?.({ ...changed, changed_at: updated_at });
        if (told) await events.record(told, trx);
        return { row: changed, changed: true, ...(told ? { event: told } : {}) };
      });
    },

    /**
     * The server now says what `applied` says: access_pending cleared, unless the row changed
     * since (another transition is then pending and clears it itself).
     */
    async markAccessApplied(applied: AccessRow, trx: Executor = db): Promise<boolean> {
      const result = await trx
        .updateTable('tenant_databases')
        .set({ access_pending: false })
        .where('id', '=', applied.id)
        .where('quota_state', '=', applied.quota_state)
        .where((eb) =>
          applied.suspended_at === null ? eb('suspended_at', 'is', null) : eb('suspended_at', 'is not', null),
        )
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },

    /** Rows whose server may not match them yet, untouched since `before` (a crash, or a lost step). */
    findAccessPending(before: Date, limit: number, trx: Executor = db): Promise<AccessRow[]> {
      return trx
        .selectFrom('tenant_databases')
        .select(ACCESS_FIELDS)
        .where('access_pending', '=', true)
        .where('updated_at', '<', before)
        .where('status', '=', 'ready')
        .orderBy('updated_at')
        .limit(limit)
        .execute();
    },

    /** Tenants (warm ones included) still in the arrangement before the owner role. */
    findLegacyArrangement(limit: number, trx: Executor = db): Promise<AccessRow[]> {
      return trx
        .selectFrom('tenant_databases')
        .select(ACCESS_FIELDS)
        .where('access_arrangement', '=', 1)
        .where('status', 'in', ['warm', 'ready'])
        .limit(limit)
        .execute();
    },

    async markArrangement(id: string, trx: Executor = db): Promise<void> {
      await trx.updateTable('tenant_databases').set({ access_arrangement: 2 }).where('id', '=', id).execute();
    },

    /** A ready tenant's plan and connection limit changed, with its audit event; false when it is not ready. */
    changePlan(
      id: string,
      plan: { plan_tier: string; connection_limit: number },
      audit: AuditEvent,
    ): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        const row = await trx
          .updateTable('tenant_databases')
          .set({
            plan_tier: plan.plan_tier,
            connection_limit: plan.connection_limit,
            updated_at: sql<Date>`now()`,
          })
          .where('id', '=', id)
          .where('status', '=', 'ready')
          .returning('id')
          .executeTakeFirst();
        if (!row) return false;
        await trx.insertInto('audit_events').values(audit).execute();
        return true;
      });
    },

    /** A page of a plan's ready tenants, by id: what apply-plan walks. */
    pageOfPlan(planTier: string, after: string | undefined, limit: number, trx: Executor = db) {
      return trx
        .selectFrom('tenant_databases')
        .select(['id', 'db_server_id', 'db_name', 'db_user', 'connection_limit'])
        .where('plan_tier', '=', planTier)
        .where('status', '=', 'ready')
        .$if(after !== undefined, (q) => q.where('id', '>', after!))
        .orderBy('id')
        .limit(limit)
        .execute();
    },

    async setConnectionLimit(id: string, limit: number, trx: Executor = db): Promise<void> {
      await trx
        .updateTable('tenant_databases')
        .set({ connection_limit: limit })
        .where('id', '=', id)
        .execute();
    },
  };
}

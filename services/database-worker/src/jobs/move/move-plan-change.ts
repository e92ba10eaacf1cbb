// What a move does beyond copying a tenant, for plan changes and for the instance's address
// (issue 15, "Plan changes"): a move to a dedicated server still being provisioned waits for it in
// awaiting_target; after every cut-over instance-service is told the tenant's new address
// (deliver-tenant-event database.moved, one delivery id per move) and a plan change's target gets
// the new plan's connection limit and guardrails; a plan change's emptied dedicated server (the
// source once done, the target when it was cancelled or failed) is retired as a released
// dedicated tenant's is. Each repeats safely: a repeated notice is one delivery (its job id), the
// plan's settings are idempotent, a retire is conditional on the server holding no tenant.
import { type DbServer, SERVING_STATUSES, type TenantMove } from '@tenantdb/catalog';
import { PermanentJobError, RetryLater } from '@tenantdb/jobs';
import { guardrailsOf } from '@tenantdb/pool-server';
import type { JobContext, WorkerDeps } from '../../context';
import type { MoveParts } from './move-steps';

/** How often a move waiting for its dedicated server looks again (and records its heartbeat). */
const AWAIT_TARGET_MS = 2_000;
const STARTING = ['provisioning', 'initializing'];

type PlanChangeDeps = Pick<
  WorkerDeps,
  'db' | 'moves' | 'servers' | 'plans' | 'audit' | 'queues' | 'tenantAccess' | 'metrics'
>;

export function createPlanChangeSteps(deps: PlanChangeDeps) {
  const { db, moves, servers, plans, audit, queues, tenantAccess, metrics } = deps;

  const steps = {
    /**
     * awaiting_target: the dedicated server active → its slot taken and on to pending (the record
     * after it); still starting → its provisioning enqueued again (a no-op while queued; a lost
     * one made good) and a look again later; failed or gone → the move fails, holding nothing.
     */
    async awaitTarget(p: MoveParts): Promise<TenantMove> {
      const target = p.target;
      if (target.status === 'active' || target.status === 'full') {
        const taken = await moves.takeTargetSlot(p.move);
        if (taken === 'no-room') throw new PermanentJobError('the dedicated server has no free slot');
        if (taken === 'taken') {
          metrics.movePhase('pending');
          await audit.record({
            actor: 'database-worker',
            action: 'move.pending',
            db_server_id: target.id,
            tenant_database_id: p.move.tenant_database_id,
            details: { move_id: p.move.id, from: 'awaiting_target' },
          });
        }
        return (await moves.findById(p.move.id))!;
      }
      if (STARTING.includes(target.status)) {
        await queues.enqueue('provision-server', { server_id: target.id });
        // The heartbeat: reconcile leaves a waiting move alone while it is touched.
        if (!(await moves.progress(p.move.id, 'awaiting_target', {})))
          return (await moves.findById(p.move.id))!;
        throw new RetryLater(AWAIT_TARGET_MS, 'the dedicated server is being provisioned');
      }
      throw new PermanentJobError(
        `the dedicated server is ${target.status}${target.status_reason ? `: ${target.status_reason}` : ''}`,
      );
    },

    /**
     * After the cut-over (cleaning_up, repeated until it advances): a plan change's plan on the
     * target role, and the address notice to instance-service.
     */
    async afterCutOver(p: MoveParts): Promise<void> {
      if (p.move.plan_tier) {
        const plan = await plans.find(p.move.plan_tier);
        if (plan)
          await tenantAccess.applyPlan(p.target, p.names, {
            connectionLimit: plan.connection_limit,
            guardrails: guardrailsOf(plan),
          });
      }
      if (p.tenant.instance_id)
        await queues.enqueue('deliver-tenant-event', {
          instance_id: p.tenant.instance_id,
          event: 'database.moved',
          occurred_at: (p.move.cut_over_at ?? new Date()).toISOString(),
          delivery_id: `moved-${p.move.id}`,
        });
    },

    /** A plan change just ended (once per move): counted, and its emptied dedicated server retired. */
    async finished(move: TenantMove, log: JobContext['log']): Promise<void> {
      if (!move.plan_tier) return;
      const target = await servers.findById(move.target_server_id);
      const result = move.phase === 'done' ? 'done' : move.phase === 'cancelled' ? 'cancelled' : 'failed';
      metrics.planChangeFinished(target?.server_type === 'dedicated' ? 'to_dedicated' : 'to_shared', result);
      await steps.retireEmptied(move, log);
    },

    /** A finished plan change's dedicated server that holds no tenant now: decommissioned. */
    async retireEmptied(move: TenantMove, log: JobContext['log']): Promise<void> {
      if (!move.plan_tier) return;
      const id = move.phase === 'done' ? move.source_server_id : move.target_server_id;
      const server = await servers.findById(id);
      if (server?.server_type !== 'dedicated') return;
      // A cancel while it was provisioning: it is retired once it is up (removing a server half
      // made would race its provisioning job). One that failed is cleanup-failed-servers'.
      if (STARTING.includes(server.status))
        throw new RetryLater(AWAIT_TARGET_MS, 'the dedicated server is retired once it is up');
      if (server.status === 'decommissioning') return enqueueRetire(server);
      if (!(SERVING_STATUSES as readonly string[]).includes(server.status)) return;
      const marked = await db.transaction().execute(async (trx) => {
        const row = await servers.markDecommissioning(
          server.id,
          SERVING_STATUSES,
          `emptied by a plan change (move ${move.id}); retired`,
          trx,
        );
        if (row)
          await audit.record(
            {
              actor: 'database-worker',
              action: 'server.retire_dedicated',
              db_server_id: server.id,
              instance_id: server.dedicated_to_instance_id,
              details: { name: server.name, move_id: move.id, plan_tier: move.plan_tier },
            },
            trx,
          );
        return row;
      });
      if (!marked) return; // it holds a tenant (the move's own, or the instance's again)
      log.info(
        { db_server_id: server.id, move_id: move.id },
        'retiring the dedicated server a plan change emptied',
      );
      await enqueueRetire(server);
    },
  };
  return steps;

  async function enqueueRetire(server: DbServer): Promise<void> {
    await queues.enqueue('decommission-server', { server_id: server.id });
  }
}

// apply-plan {plan_tier}: after an admin changed a plan, every ready tenant of it is brought in
// step, a page at a time (the plan is read again for each page, so a change made meanwhile is
// what the rest gets): connection limit and guardrails on its server (guardrails on shared
// servers only), the row's connection limit, and a restricted or warned tenant that the new
// quota fits is moved down the ladder at once. A tenant whose server is away is left for the
// next run of the job (it fails and retries); every step is idempotent.
import { nextQuotaState, QUOTA_STATES } from '@tenantdb/catalog';
import { guardrailsOf } from '@tenantdb/pool-server';
import { applyQuotaTransition, type JobContext, quotaTransitionDeps, type WorkerDeps } from '../context';

const PAGE = 200;
const NO_GUARDRAILS = {
  statement_timeout_ms: null,
  idle_in_transaction_timeout_ms: null,
  temp_file_limit_mb: null,
  work_mem_mb: null,
};

export function applyPlan(deps: WorkerDeps) {
  const { plans, usage, servers, tenantAccess } = deps;
  const transitions = quotaTransitionDeps(deps);
  return async ({ plan_tier }: { plan_tier: string }, { log }: JobContext) => {
    let after: string | undefined;
    let applied = 0;
    let lifted = 0;
    for (;;) {
      const plan = await plans.find(plan_tier);
      if (!plan) return 'no such plan';
      const page = await usage.pageOfPlan(plan_tier, after, PAGE);
      for (const row of page) {
        const server = await servers.findById(row.db_server_id);
        if (!server?.host) continue;
        const guardrails = guardrailsOf(server.server_type === 'shared' ? plan : NO_GUARDRAILS);
        await tenantAccess.applyPlan(
          server,
          { dbName: row.db_name, dbUser: row.db_user },
          { connectionLimit: plan.connection_limit, guardrails },
        );
        if (row.connection_limit !== plan.connection_limit)
          await usage.setConnectionLimit(row.id, plan.connection_limit);
        applied++;
        const judged = await usage.findLadderRow(row.id);
        if (!judged) continue;
        const next = nextQuotaState({
          state: judged.quota_state,
          sizeBytes: judged.size_bytes ?? 0,
          overQuotaSince: judged.over_quota_since,
          quotaMb: judged.storage_quota_mb,
          warnFraction: Number(judged.quota_warn_fraction),
          liftFraction: Number(judged.quota_lift_fraction),
          graceSeconds: judged.quota_grace_seconds,
          now: new Date(),
        });
        // Only down the ladder: a plan change never restricts; the next sample judges that.
        if (QUOTA_STATES.indexOf(next) < QUOTA_STATES.indexOf(judged.quota_state)) {
          if ((await applyQuotaTransition(transitions, judged, next)).moved) lifted++;
        }
      }
      after = page.at(-1)?.id;
      if (page.length < PAGE) break;
    }
    log.info({ plan_tier, applied, lifted }, 'plan applied to its tenants');
    return { applied, lifted };
  };
}

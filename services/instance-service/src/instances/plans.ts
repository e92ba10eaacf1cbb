// The plan names database-service knows, cached briefly so a create can refuse an unknown
// plan_tier at once (400) without asking on every request. A name not in the cache is looked up
// again right away (a plan just added works at once), at most once per MISS_REFRESH_MS however
// many unknown names arrive, and concurrent look-ups share one request.
// database-service unreachable and the name not known from before: 'unavailable', and the create
// goes ahead (wait-for-database asks database-service itself and fails an unknown plan then), so
// an outage of database-service never stops signups.
import type { DatabaseServiceClient } from '@tenantdb/contracts';

export type PlanCheck = 'known' | 'unknown' | 'unavailable';
export type PlanCatalog = ReturnType<typeof createPlanCatalog>;

const FRESH_MS = 30_000;
const MISS_REFRESH_MS = 1_000;
/** A create waits at most this long for the list (no retries): it must answer quickly. */
const LOOKUP_TIMEOUT_MS = 2_000;

export function createPlanCatalog(databaseService: Pick<DatabaseServiceClient, 'listPlans'>) {
  let names: ReadonlySet<string> | undefined;
  let fetchedAt = 0;
  let attemptedAt = 0;
  let inFlight: Promise<boolean> | undefined;

  /** True when the list was fetched now. */
  function refresh(): Promise<boolean> {
    inFlight ??= (async () => {
      attemptedAt = Date.now();
      try {
        const { plans } = await databaseService.listPlans({ timeoutMs: LOOKUP_TIMEOUT_MS, retries: 0 });
        names = new Set(plans.map((p) => p.plan_tier));
        fetchedAt = Date.now();
        return true;
      } catch {
        return false;
      } finally {
        inFlight = undefined;
      }
    })();
    return inFlight;
  }

  return {
    async check(planTier: string): Promise<PlanCheck> {
      const age = Date.now() - fetchedAt;
      if (names?.has(planTier) && age < FRESH_MS) return 'known';
      const tooSoon = names !== undefined && age < FRESH_MS && Date.now() - attemptedAt < MISS_REFRESH_MS;
      const fetched = tooSoon ? false : await refresh();
      if (names?.has(planTier)) return 'known'; // also from a stale list while database-service is away
      // A fresh answer (or one from under a second ago) without it; else we cannot tell now.
      return fetched || tooSoon ? 'unknown' : 'unavailable';
    },
  };
}

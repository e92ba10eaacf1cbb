// sample-usage-all (every TENANTDB_USAGE_SAMPLE_PERIOD_MS, one schedule for all replicas) queues
// one sample-usage-server job per serving server, each delayed by a fixed offset within the
// first nine tenths of the period (a hash of the server id), so the fleet's servers are spread
// over it rather than all measured at once. sample-usage-server measures every ready tenant of its
// server on one connection of its own (pg_database_size and the sessions of each), stores the
// figures with the time in one statement, and climbs the quota ladder for those whose state
// changes.
//
// At most one sampling connection per server at a time: the job id is the server's (a server has
// at most one sample queued or running), and the job uses one connection, closed at its end.
import { createHash } from 'node:crypto';
import { nextQuotaState, SERVING_STATUSES, type UsageSample } from '@tenantdb/catalog';
import { TENANT_PREFIX } from '@tenantdb/pool-server';
import { applyQuotaTransition, type JobContext, quotaTransitionDeps, type WorkerDeps } from '../context';

const SWEEP_BATCH = 500;

/**
 * The share of the period the servers are spread over: the rest is slack for a busy queue, so the
 * last server of a pass is sampled before the next pass begins (`pnpm bench:scale` measures it).
 */
const SPREAD = 0.9;

/** Where in the period a server is sampled: the same offset every period. */
export function sampleOffsetMs(serverId: string, periodMs: number): number {
  const spreadMs = Math.max(1, Math.floor(periodMs * SPREAD));
  return createHash('sha256').update(serverId).digest().readUInt32BE(0) % spreadMs;
}

export function sampleUsageAll(deps: WorkerDeps) {
  const { fleet, queues, config } = deps;
  return async (_payload: unknown, { log }: JobContext) => {
    let servers = 0;
    let after: string | undefined;
    for (;;) {
      const ids = await fleet.pageWithAddress(SERVING_STATUSES, after, SWEEP_BATCH);
      for (const id of ids) {
        await queues.enqueue(
          'sample-usage-server',
          { server_id: id },
          { delay: sampleOffsetMs(id, config.TENANTDB_USAGE_SAMPLE_PERIOD_MS) },
        );
      }
      servers += ids.length;
      after = ids.at(-1);
      if (ids.length < SWEEP_BATCH) break;
    }
    log.info({ servers, period_ms: config.TENANTDB_USAGE_SAMPLE_PERIOD_MS }, 'usage samples queued');
    return { servers };
  };
}

/** Size and sessions of the named databases, read in one statement. */
const MEASURE = `SELECT d.datname AS name, pg_database_size(d.oid) AS size,
                        coalesce(s.numbackends, 0)::int AS conns
                   FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid
                  WHERE d.datname = ANY($1::text[]) AND starts_with(d.datname, '${TENANT_PREFIX}')`;

export function sampleUsageServer(deps: WorkerDeps) {
  const { servers, usage, connections } = deps;
  const transitions = quotaTransitionDeps(deps);
  return async ({ server_id }: { server_id: string }, { log }: JobContext) => {
    const server = await servers.findById(server_id);
    if (!server?.host || !(SERVING_STATUSES as readonly string[]).includes(server.status))
      return 'not sampled';
    const tenants = await usage.listToSample(server_id);
    if (tenants.length === 0) return { tenants: 0 };
    const byName = new Map(tenants.map((t) => [t.db_name, t.id]));
    const measured = await connections.withOwnClient(server, async (client) => {
      try {
        return (
          await client.query<{ name: string; size: number; conns: number }>(MEASURE, [[...byName.keys()]])
        ).rows;
      } catch {
        // A database dropped while it was measured fails the whole statement: one by one then.
        const rows: { name: string; size: number; conns: number }[] = [];
        for (const name of byName.keys()) {
          const one = await client
            .query<{ name: string; size: number; conns: number }>(MEASURE, [[name]])
            .catch(() => undefined);
          if (one?.rows[0]) rows.push(one.rows[0]);
        }
        return rows;
      }
    });
    const samples: UsageSample[] = measured.map((m) => ({
      id: byName.get(m.name)!,
      sizeBytes: Number(m.size),
      connections: m.conns,
    }));
    const rows = await usage.recordSamples(samples);
    const now = new Date();
    let moved = 0;
    for (const row of rows) {
      const next = nextQuotaState({
        state: row.quota_state,
        sizeBytes: row.size_bytes ?? 0,
        overQuotaSince: row.over_quota_since,
        quotaMb: row.storage_quota_mb,
        warnFraction: Number(row.quota_warn_fraction),
        liftFraction: Number(row.quota_lift_fraction),
        graceSeconds: row.quota_grace_seconds,
        now,
      });
      if (next === row.quota_state) continue;
      try {
        const result = await applyQuotaTransition(transitions, row, next);
        if (result.moved) {
          moved++;
          log.info(
            { tenant_database_id: row.id, from: row.quota_state, to: next, size_bytes: row.size_bytes },
            'quota state changed',
          );
        }
      } catch (err) {
        // The catalog may have moved already (access_pending): the reconciler finishes it.
        log.warn(
          { tenant_database_id: row.id, to: next, reason: (err as Error).message },
          'quota transition not finished',
        );
      }
    }
    return { tenants: tenants.length, sampled: samples.length, transitions: moved };
  };
}

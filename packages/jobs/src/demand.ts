// Unmet shared demand: the instances an allocation turned away because no shared pool had room,
// each with when it last asked (a Redis sorted set under the queue prefix). database-service
// records a miss before it answers 202; the capacity planner reads who asked recently and
// provisions for those still without a database, on top of the headroom. A waiting instance asks
// again every retry_after, which keeps it recent; one that stopped asking ages out.
import { type Queues, withinDeadline } from './queues';

/** How long a turned-away instance counts as waiting after it last asked. */
export const DEMAND_WINDOW_MS = 120_000;

const key = (queues: Pick<Queues, 'prefix'>) => `${queues.prefix}:demand:shared`;

export async function recordUnmetDemand(queues: Queues, instanceId: string): Promise<void> {
  const now = Date.now();
  // Trimmed on every write, so the set never holds more than one window's askers.
  // Redis away: QueueUnavailableError, which the API answers 503 (as for the job it would enqueue).
  await withinDeadline(
    queues.connection
      .multi()
      .zadd(key(queues), now, instanceId)
      .zremrangebyscore(key(queues), '-inf', now - DEMAND_WINDOW_MS)
      .exec(),
  );
}

/** Instances turned away within the window (some may have a database by now). */
export function recentUnmetDemand(queues: Queues): Promise<string[]> {
  return queues.connection.zrangebyscore(key(queues), Date.now() - DEMAND_WINDOW_MS, '+inf');
}

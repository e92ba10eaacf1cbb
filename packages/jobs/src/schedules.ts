// Periodic jobs through BullMQ job schedulers. The scheduler id is fixed, so however many replicas
// install one there is one schedule and one job per period. Installed at start and then kept:
// a Redis that comes back empty (no persistence, a failover to a fresh node) has lost them, so
// each replica checks every so often and installs the ones that are missing — only those, since
// installing a schedule also runs its job once.
import type { JobLog } from './consumer';
import type { JobName, QueueName } from './job-definitions';
import type { Queues } from './queues';

export interface Schedule {
  queue: QueueName;
  name: JobName;
  everyMs: number;
}

export interface KeptSchedules {
  /** Installs what is missing now (also what the timer does). Returns the names installed. */
  check(): Promise<string[]>;
  stop(): void;
}

async function install(queues: Queues, s: Schedule): Promise<void> {
  await queues
    .queue(s.queue)
    .upsertJobScheduler(
      s.name,
      { every: s.everyMs },
      { name: s.name, data: {}, opts: { removeOnComplete: true, removeOnFail: true, attempts: 1 } },
    );
}

/** Installs the schedules, then checks every `checkEveryMs` that they are still there. */
export async function keepSchedules(
  queues: Queues,
  schedules: readonly Schedule[],
  opts: { checkEveryMs: number; logger: JobLog },
): Promise<KeptSchedules> {
  for (const s of schedules) await install(queues, s);
  let checking = false;
  const check = async (): Promise<string[]> => {
    const installed: string[] = [];
    for (const s of schedules) {
      if (await queues.queue(s.queue).getJobScheduler(s.name)) continue;
      await install(queues, s);
      installed.push(s.name);
    }
    if (installed.length)
      opts.logger.warn({ schedules: installed }, 'job schedules were missing from Redis; installed again');
    return installed;
  };
  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    // Redis away: the next tick tries again.
    check()
      .catch(() => {})
      .finally(() => {
        checking = false;
      });
  }, opts.checkEveryMs);
  timer.unref();
  return { check, stop: () => clearInterval(timer) };
}

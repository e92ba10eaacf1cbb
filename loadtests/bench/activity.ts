// What Postgres sessions are doing during a measured phase, sampled from pg_stat_activity: the
// average number of sessions in each state (running, waiting for a lock, flushing WAL at commit,
// idle inside a transaction while the client works, …). A profile from the database side, to
// set beside the CPU breakdown: it shows where requests wait rather than where cores burn.
import type pg from 'pg';
import { connectPg } from './pg';

export interface ActivityRow {
  state: string | null;
  wait_event_type: string | null;
  wait_event: string | null;
  query: string;
}

export interface ActivityTarget {
  /** Admin connection string of the server. */
  url: string;
  /** Only sessions of this application_name are sampled. */
  applicationName: string;
  /** A label for a session, or undefined to leave it out (idle sessions, say). */
  classify(row: ActivityRow): string | undefined;
}

export interface ActivitySampler {
  /** Stops sampling; average sessions per label over the samples taken, most first. */
  stop(): Promise<{ samples: number; sessions: [string, number][] }>;
}

export async function sampleActivity(
  targets: ActivityTarget[],
  intervalMs: number,
): Promise<ActivitySampler> {
  const clients: pg.Client[] = [];
  for (const t of targets) clients.push(await connectPg(t.url));
  const counts = new Map<string, number>();
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      const results = await Promise.all(
        targets.map((t, i) =>
          clients[i]!.query<ActivityRow>(
            `SELECT state, wait_event_type, wait_event, left(query, 80) AS query
               FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`,
            [t.applicationName],
          ).then(
            (r) => r.rows,
            () => [] as ActivityRow[],
          ),
        ),
      );
      samples++;
      results.forEach((rows, i) => {
        for (const row of rows) {
          const label = targets[i]!.classify(row);
          if (label) counts.set(label, (counts.get(label) ?? 0) + 1);
        }
      });
      const spent = performance.now() - started;
      await new Promise((r) => setTimeout(r, Math.max(0, intervalMs - spent)));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
      const sessions = [...counts]
        .map(([label, n]): [string, number] => [label, n / Math.max(1, samples)])
        .sort((a, b) => b[1] - a[1]);
      return { samples, sessions };
    },
  };
}

/** What an active or in-transaction session is doing, in words. */
export function describeWait(row: ActivityRow): string {
  if (row.state === 'idle in transaction') return 'idle in transaction (waiting for its client)';
  if (!row.wait_event) return 'running';
  if (row.wait_event_type === 'Lock') return `waiting for a lock (${row.wait_event})`;
  if (/^wal(sync|write)$/i.test(row.wait_event)) return 'flushing WAL (commit)';
  return `waiting (${row.wait_event_type}: ${row.wait_event})`;
}

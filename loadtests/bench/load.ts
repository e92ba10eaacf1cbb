// The load generators: closed loop (N workers, each sends its next request as soon as the previous
// one answered) and open loop (requests start on a fixed schedule whatever the answers take).
// Every scenario (HTTP or raw pg) goes through one of them so all figures share one latency clock
// and one percentile definition.

export type Outcome = { kind: 'ok' } | { kind: 'accepted' } | { kind: 'error'; detail: string };

export const OK: Outcome = { kind: 'ok' };
export const ACCEPTED: Outcome = { kind: 'accepted' };
export const fail = (detail: string): Outcome => ({ kind: 'error', detail });

/**
 * One request; `seq` is unique across workers, so it can pick a distinct input per request.
 * `startedAt` (performance.now()) is where its latency is measured from: when an open loop
 * scheduled it, when a closed-loop worker sent it.
 */
export type Operation = (worker: number, seq: number, startedAt: number) => Promise<Outcome>;

export interface LoadPlan {
  concurrency: number;
  durationMs: number;
  /** Stop issuing once this many requests were started (whichever of duration/count comes first). */
  maxRequests?: number;
  /** Unrecorded run before the measurement: JIT, connection pools and caches warm up first. */
  warmupMs?: number;
}

export interface LatencySummary {
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export interface LoadResult {
  requests: number;
  ok: number;
  accepted: number;
  errors: number;
  /** Distinct error details with their counts, most frequent first (capped). */
  errorSamples: { detail: string; count: number }[];
  elapsedMs: number;
  /** Completed requests per second, errors included (they are reported separately). */
  throughput: number;
  latency: LatencySummary;
}

export async function closedLoop(plan: LoadPlan, op: Operation): Promise<LoadResult> {
  let seq = 0;
  const next = () => seq++;
  if (plan.warmupMs) await phase(plan.concurrency, plan.warmupMs, undefined, op, next, new Tally());
  const tally = new Tally();
  return tally.result(await phase(plan.concurrency, plan.durationMs, plan.maxRequests, op, next, tally));
}

export interface AlternatingPlan {
  concurrency: number;
  /** Measured blocks per side; each block is a closed loop that ends when its count or time is up. */
  blocks: number;
  block: { durationMs: number; maxRequests?: number };
  /** Unrecorded, once per side before its first block. */
  warmup?: { durationMs: number; maxRequests?: number };
  /** Runs after every block (and warm-up), before the next starts; not timed. */
  between?: () => Promise<void>;
}

/**
 * Closed loops over two or more sides (the same request against different systems) in alternating
 * blocks — A B, B A, A B, … — so that whatever drifts on the machine over the run (disk speed,
 * other work) falls on every side alike instead of on whichever ran last. Each side's blocks are
 * tallied together: its requests, and its elapsed time summed over its own blocks. `seq` counts per
 * side across its blocks (warm-up first), so an operation can still pick a distinct input per request.
 */
export async function alternating<K extends string>(
  plan: AlternatingPlan,
  sides: Record<K, Operation>,
): Promise<Record<K, AlternatedResult>> {
  const keys = Object.keys(sides) as K[];
  const state = new Map(
    keys.map((k) => {
      let seq = 0;
      const side = { tally: new Tally(), elapsedMs: 0, next: () => seq++, blocks: [] as LoadResult[] };
      return [k, side];
    }),
  );
  for (let b = 0; b < plan.blocks; b++) {
    for (const k of b % 2 === 0 ? keys : [...keys].reverse()) {
      const side = state.get(k)!;
      if (plan.warmup && side.blocks.length === 0) {
        const { durationMs, maxRequests } = plan.warmup;
        await phase(plan.concurrency, durationMs, maxRequests, sides[k], side.next, new Tally());
        await plan.between?.();
      }
      const { durationMs, maxRequests } = plan.block;
      const block = new Tally();
      const elapsedMs = await phase(plan.concurrency, durationMs, maxRequests, sides[k], side.next, block);
      side.tally.absorb(block);
      side.elapsedMs += elapsedMs;
      side.blocks.push(block.result(elapsedMs));
      await plan.between?.();
    }
  }
  return Object.fromEntries(
    keys.map((k) => {
      const side = state.get(k)!;
      return [k, { ...side.tally.result(side.elapsedMs), blocks: side.blocks }];
    }),
  ) as Record<K, AlternatedResult>;
}

/** A side of an alternating run: its blocks together, and each block on its own (in run order). */
export interface AlternatedResult extends LoadResult {
  blocks: LoadResult[];
}

/** One closed loop into `tally`; resolves to its elapsed time. */
async function phase(
  concurrency: number,
  durationMs: number,
  maxRequests: number | undefined,
  op: Operation,
  next: () => number,
  tally: Tally,
): Promise<number> {
  let started = 0;
  const t0 = performance.now();
  const deadline = t0 + durationMs;

  const worker = async (w: number) => {
    while (performance.now() < deadline && (maxRequests === undefined || started < maxRequests)) {
      started++;
      const s = next();
      const begin = performance.now();
      let outcome: Outcome;
      try {
        outcome = await op(w, s, begin);
      } catch (err) {
        outcome = fail(describeError(err));
      }
      tally.record(outcome, performance.now() - begin);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  return performance.now() - t0;
}

/** Outcomes and latencies of one measured phase, and the LoadResult they make. */
export class Tally {
  private readonly latencies: number[] = [];
  private readonly errorCounts = new Map<string, number>();
  private completed = 0;
  private ok = 0;
  private accepted = 0;
  private errors = 0;

  /** `ms` undefined: the request was never sent, so it has no latency. */
  record(outcome: Outcome, ms?: number): void {
    this.completed++;
    if (ms !== undefined) this.latencies.push(ms);
    if (outcome.kind === 'ok') this.ok++;
    else if (outcome.kind === 'accepted') this.accepted++;
    else {
      this.errors++;
      this.errorCounts.set(outcome.detail, (this.errorCounts.get(outcome.detail) ?? 0) + 1);
    }
  }

  /** Adds another tally's outcomes and latencies to this one. */
  absorb(other: Tally): void {
    for (const ms of other.latencies) this.latencies.push(ms);
    for (const [detail, n] of other.errorCounts)
      this.errorCounts.set(detail, (this.errorCounts.get(detail) ?? 0) + n);
    this.completed += other.completed;
    this.ok += other.ok;
    this.accepted += other.accepted;
    this.errors += other.errors;
  }

  result(elapsedMs: number): LoadResult {
    return {
      requests: this.completed,
      ok: this.ok,
      accepted: this.accepted,
      errors: this.errors,
      errorSamples: [...this.errorCounts]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 5)
        .map(([detail, count]) => ({ detail, count })),
      elapsedMs,
      throughput: this.completed / (elapsedMs / 1000),
      latency: summarize(this.latencies),
    };
  }
}

export interface OpenLoopPlan {
  /** Requests started per second, on a fixed schedule (request i at i / ratePerSec s). */
  ratePerSec: number;
  /** Requests in all: the schedule spans requests / ratePerSec seconds. */
  requests: number;
  /**
   * Requests in flight at once, at most (bounds the generator's sockets and memory). A request due
   * while this many are out is not sent and counts as an error: the system fell that far behind.
   */
  maxInFlight: number;
}

export interface OpenLoopResult extends LoadResult {
  /** Requests started per second over the schedule (what was offered). */
  offeredPerSec: number;
  /** How late the generator itself started a request, at worst (its own event loop lag). */
  maxSendLagMs: number;
}

/**
 * Open loop: request i starts at t0 + i / rate whatever earlier ones take, so a slow system
 * builds a backlog instead of slowing the load down. Latency is measured from the scheduled
 * start (not the actual one), so a late generator cannot hide a delay (coordinated omission).
 * Bounded by count; each operation must bound its own time (the HTTP and pg clients time out).
 */
export async function openLoop(plan: OpenLoopPlan, op: Operation): Promise<OpenLoopResult> {
  const tally = new Tally();
  let inFlight = 0;
  let maxSendLagMs = 0;
  const intervalMs = 1000 / plan.ratePerSec;
  const running: Promise<void>[] = [];
  const t0 = performance.now();
  let lastSend = t0;
  for (let i = 0; i < plan.requests; i++) {
    const due = t0 + i * intervalMs;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    lastSend = performance.now();
    maxSendLagMs = Math.max(maxSendLagMs, lastSend - due);
    if (inFlight >= plan.maxInFlight) {
      tally.record(fail(`not sent: ${plan.maxInFlight} requests already in flight`));
      continue;
    }
    inFlight++;
    running.push(
      op(0, i, due)
        .catch((err: unknown) => fail(describeError(err)))
        .then((outcome) => {
          inFlight--;
          tally.record(outcome, performance.now() - due);
        }),
    );
  }
  await Promise.all(running);
  return {
    ...tally.result(performance.now() - t0),
    offeredPerSec: plan.requests > 1 ? (plan.requests - 1) / ((lastSend - t0) / 1000) : Number.NaN,
    maxSendLagMs,
  };
}

/** Nearest-rank percentiles (no interpolation): p99 is a latency some request really had. */
export function summarize(samples: readonly number[]): LatencySummary {
  if (samples.length === 0)
    return {
      p50: Number.NaN,
      p90: Number.NaN,
      p95: Number.NaN,
      p99: Number.NaN,
      max: Number.NaN,
      mean: Number.NaN,
    };
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
  return {
    p50: at(50),
    p90: at(90),
    p95: at(95),
    p99: at(99),
    max: sorted[sorted.length - 1]!,
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
  };
}

export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: string }).code;
  const line = err.message.split('\n')[0]!.slice(0, 160);
  return code ? `${code}: ${line}` : line;
}

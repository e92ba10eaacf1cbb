import { describe, expect, it } from 'vitest';
import { alternating, fail, OK, type Operation } from './load';

describe('alternating', () => {
  /** Records which side each request went to and its seq; `b` fails every fifth of its requests. */
  function sides() {
    const calls: { side: 'a' | 'b'; seq: number }[] = [];
    let inFlight = { a: 0, b: 0 };
    let overlapped = false;
    const op =
      (side: 'a' | 'b'): Operation =>
      async (_worker, seq) => {
        calls.push({ side, seq });
        inFlight = { ...inFlight, [side]: inFlight[side] + 1 };
        if (inFlight.a > 0 && inFlight.b > 0) overlapped = true;
        await new Promise((r) => setImmediate(r));
        inFlight = { ...inFlight, [side]: inFlight[side] - 1 };
        return side === 'b' && seq % 5 === 0 ? fail('fifth') : OK;
      };
    return { calls, overlapped: () => overlapped, ops: { a: op('a'), b: op('b') } };
  }

  it('runs the sides in blocks A B, B A, A B, one side at a time, each warmed up once before its first block', async () => {
    const { calls, overlapped, ops } = sides();
    const pauses: number[] = [];
    await alternating(
      {
        concurrency: 2,
        blocks: 3,
        block: { durationMs: 60_000, maxRequests: 4 },
        warmup: { durationMs: 60_000, maxRequests: 2 },
        between: async () => {
          pauses.push(calls.length);
        },
      },
      ops,
    );
    // Consecutive requests to one side, by run: a warm-up + block 1, b warm-up + block 1, then block
    // 2 of b straight after (B A), block 2 of a, then a again (block 3: A B), then b.
    const lengths: [string, number][] = [];
    for (const c of calls) {
      const last = lengths.at(-1);
      if (last?.[0] === c.side) last[1]++;
      else lengths.push([c.side, 1]);
    }
    expect(lengths).toEqual([
      ['a', 6],
      ['b', 10],
      ['a', 8],
      ['b', 4],
    ]);
    // `between` after each warm-up and each block: the requests made by then
    expect(pauses).toEqual([2, 6, 8, 12, 16, 20, 24, 28]);
    expect(overlapped()).toBe(false);
  });

  it('tallies each side over its blocks only, with seq counting per side from the warm-up on', async () => {
    const { calls, ops } = sides();
    const result = await alternating(
      {
        concurrency: 3,
        blocks: 4,
        block: { durationMs: 60_000, maxRequests: 5 },
        warmup: { durationMs: 60_000, maxRequests: 3 },
      },
      ops,
    );
    for (const side of ['a', 'b'] as const) {
      expect(
        calls
          .filter((c) => c.side === side)
          .map((c) => c.seq)
          .sort((x, y) => x - y),
      ).toEqual(Array.from({ length: 23 }, (_, i) => i));
      expect(result[side].requests).toBe(20);
      expect(result[side].blocks.map((b) => b.requests)).toEqual([5, 5, 5, 5]);
    }
    expect(result.a).toMatchObject({ ok: 20, errors: 0 });
    // b's seqs 3…22 were measured (0…2 warmed up): 5, 10, 15 and 20 failed.
    expect(result.b).toMatchObject({ ok: 16, errors: 4, errorSamples: [{ detail: 'fifth', count: 4 }] });
    // Each block on its own too: b's blocks were seqs 3–7, 8–12, 13–17 and 18–22.
    expect(result.b.blocks.map((b) => b.errors)).toEqual([1, 1, 1, 1]);
    expect(result.b.latency.max).toBe(Math.max(...result.b.blocks.map((b) => b.latency.max)));
    expect(result.a.elapsedMs).toBeGreaterThan(0);
  });
});

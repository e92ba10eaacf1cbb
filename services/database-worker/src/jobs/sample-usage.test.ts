import { describe, expect, it } from 'vitest';
import { sampleOffsetMs } from './sample-usage';

describe('where a server is sampled in the period', () => {
  it('is the same every period, and within its first nine tenths (the rest is the queue’s slack)', () => {
    const period = 30_000;
    const offsets = Array.from({ length: 2_000 }, () => crypto.randomUUID()).map((id) => {
      expect(sampleOffsetMs(id, period)).toBe(sampleOffsetMs(id, period));
      return sampleOffsetMs(id, period);
    });
    expect(Math.min(...offsets)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...offsets)).toBeLessThan(period * 0.9);
    // spread, not bunched: the last tenth of the spread has its share
    expect(offsets.filter((o) => o >= period * 0.8).length).toBeGreaterThan(100);
  });
});

import { describe, expect, it } from 'vitest';
import { type LadderInput, MB, nextQuotaState } from './quota-ladder';

const base: LadderInput = {
  state: 'ok',
  sizeBytes: 0,
  overQuotaSince: null,
  quotaMb: 100,
  warnFraction: 0.8,
  liftFraction: 0.7,
  graceSeconds: 60,
  now: new Date('2026-01-01T00:10:00Z'),
};
const at = (mb: number, more: Partial<LadderInput> = {}) =>
  nextQuotaState({ ...base, sizeBytes: mb * MB, ...more });

describe('the quota ladder', () => {
  it('warns at the warn fraction, one step at a time', () => {
    expect(at(79)).toBe('ok');
    expect(at(80)).toBe('warned');
    expect(at(500, { overQuotaSince: new Date(0) })).toBe('warned'); // never ok → restricted
  });

  it('restricts a warned tenant only once it has been over the quota for the grace period', () => {
    const warned = { state: 'warned' as const };
    expect(at(99, warned)).toBe('warned');
    expect(at(101, { ...warned, overQuotaSince: new Date('2026-01-01T00:09:30Z') })).toBe('warned');
    expect(at(101, { ...warned, overQuotaSince: new Date('2026-01-01T00:09:00Z') })).toBe('restricted');
    expect(at(101, { ...warned, graceSeconds: 0, overQuotaSince: base.now })).toBe('restricted');
  });

  it('lifts under the lower threshold only (hysteresis), and without a quota', () => {
    expect(at(75, { state: 'warned' })).toBe('warned');
    expect(at(69, { state: 'warned' })).toBe('ok');
    expect(at(75, { state: 'restricted' })).toBe('restricted');
    expect(at(69, { state: 'restricted' })).toBe('ok');
    expect(at(5000, { state: 'restricted', quotaMb: null })).toBe('ok');
  });
});

import type { Plan } from '@tenantdb/catalog';
import { describe, expect, it } from 'vitest';
import { needsMove } from './plan-change';

const plan = (placement: 'shared' | 'dedicated') => ({ placement }) as Plan;
const on = (server_type: 'shared' | 'dedicated') => ({ server_type });

describe('needsMove', () => {
  it('moves when the new plan is placed elsewhere than the tenant lives', () => {
    expect(needsMove(plan('shared'), plan('dedicated'), on('shared'))).toBe(true);
    expect(needsMove(plan('dedicated'), plan('shared'), on('dedicated'))).toBe(true);
  });
  it('does not move within a placement', () => {
    expect(needsMove(plan('shared'), plan('shared'), on('shared'))).toBe(false);
    expect(needsMove(plan('dedicated'), plan('dedicated'), on('dedicated'))).toBe(false);
  });
  it('a require_dedicated tenant of a shared plan already fits a dedicated plan where it is', () => {
    expect(needsMove(plan('shared'), plan('dedicated'), on('dedicated'))).toBe(false);
  });
  it('without a known current plan, judges by the server it is on', () => {
    expect(needsMove(undefined, plan('dedicated'), on('shared'))).toBe(true);
    expect(needsMove(undefined, plan('shared'), on('dedicated'))).toBe(true);
    expect(needsMove(undefined, plan('shared'), on('shared'))).toBe(false);
  });
});

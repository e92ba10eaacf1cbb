import { describe, expect, it } from 'vitest';
import { certificateWarning, type HealthState, nextHealthState } from './health';

const active: HealthState = {
  status: 'active',
  status_reason: null,
  health_status: 'healthy',
  health_failures: 0,
  current_instances: 3,
  max_instances: 10,
};
const fail = { ok: false, error: 'ECONNREFUSED' };
const ok = { ok: true, error: null };

describe('health transitions', () => {
  it('degrades on the first two failures and takes the server out on the third', () => {
    const one = { ...active, ...nextHealthState(active, fail) };
    expect(one).toMatchObject({ health_status: 'degraded', health_failures: 1, status: 'active' });
    const two = { ...one, ...nextHealthState(one, fail) };
    expect(two).toMatchObject({ health_status: 'degraded', health_failures: 2, status: 'active' });
    const three = { ...two, ...nextHealthState(two, fail) };
    expect(three).toMatchObject({ health_status: 'unhealthy', health_failures: 3, status: 'error' });
    expect(three.status_reason).toMatch(/health check failed 3 times: ECONNREFUSED/);
  });

  it('recovers an errored server on its first good check, as full when it is full', () => {
    const errored = {
      ...active,
      status: 'error' as const,
      status_reason: 'health check failed 3 times: x',
      health_failures: 5,
    };
    expect(nextHealthState(errored, ok)).toEqual({
      health_status: 'healthy',
      health_failures: 0,
      status: 'active',
      status_reason: null,
    });
    expect(nextHealthState({ ...errored, current_instances: 10 }, ok).status).toBe('full');
  });

  it('leaves statuses that health did not set alone', () => {
    const cordoned = { ...active, status: 'cordoned' as const, status_reason: 'operator' };
    expect(nextHealthState({ ...cordoned, health_failures: 2 }, fail)).toMatchObject({
      status: 'cordoned',
      health_status: 'unhealthy',
    });
    const failedProvisioning = { ...active, status: 'error' as const, status_reason: 'image not found' };
    expect(nextHealthState(failedProvisioning, ok).status).toBe('error');
  });
});

describe('certificateWarning', () => {
  const now = new Date('2026-12-03T00:00:00Z');
  const inDays = (d: number) => new Date(now.getTime() + d * 86_400_000);
  it('warns inside the threshold and once expired, not before, and not without a certificate', () => {
    expect(certificateWarning(inDays(30), now, 21)).toBeNull();
    expect(certificateWarning(inDays(21), now, 21)).toBeNull();
    expect(certificateWarning(inDays(20.5), now, 21)).toMatch(/expires in 20 days/);
    expect(certificateWarning(inDays(-1), now, 21)).toMatch(/expired on 2026-12-02/);
    expect(certificateWarning(null, now, 21)).toBeNull();
  });
});

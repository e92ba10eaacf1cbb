// The quota ladder of one tenant, as a pure function of its latest sample and its plan:
//   ok → warned      at or over warn_fraction × quota
//   warned → restricted  over the quota for the whole grace period (from the first sample over it)
//   warned | restricted → ok  under lift_fraction × quota (hysteresis: between lift and warn a
//                        warned tenant stays warned), or when the plan has no quota any more
// One step per sample: ok never jumps to restricted, so the tenant is always warned first.
import type { QuotaState } from './types';

export interface LadderInput {
  state: QuotaState;
  sizeBytes: number;
  overQuotaSince: Date | null;
  quotaMb: number | null;
  warnFraction: number;
  liftFraction: number;
  graceSeconds: number;
  now: Date;
}

export const MB = 1024 * 1024;

export function nextQuotaState(i: LadderInput): QuotaState {
  if (i.quotaMb === null) return 'ok';
  const quota = i.quotaMb * MB;
  if (i.sizeBytes < i.liftFraction * quota) return 'ok';
  if (i.state === 'ok') return i.sizeBytes >= i.warnFraction * quota ? 'warned' : 'ok';
  if (i.state === 'warned') {
    const over = i.sizeBytes >= quota && i.overQuotaSince !== null;
    const graceOver = over && i.now.getTime() - i.overQuotaSince!.getTime() >= i.graceSeconds * 1000;
    return graceOver ? 'restricted' : 'warned';
  }
  return 'restricted';
}

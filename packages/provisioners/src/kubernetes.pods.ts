// How a kubernetes server's pods read, as a pure function of what the API server lists: ready,
// starting, or failed for good (and why). Both modes read their pods this way.

interface PodLike {
  metadata?: { name?: string };
  status?: {
    phase?: string;
    conditions?: { type?: string; status?: string; reason?: string; message?: string }[];
    containerStatuses?: {
      name?: string;
      ready?: boolean;
      restartCount?: number;
      state?: {
        waiting?: { reason?: string; message?: string };
        terminated?: { exitCode?: number; reason?: string };
      };
      lastState?: { terminated?: { exitCode?: number; reason?: string; message?: string } };
    }[];
  };
}

export interface PodSummary {
  ready: boolean;
  reason?: string;
  terminal: boolean;
}

const NEVER_PULLS = new Set(['InvalidImageName', 'ErrImageNeverPull']);
const PULL_FAILS = new Set(['ErrImagePull', 'ImagePullBackOff']);
/** A pull that failed because the image is not there (a registry being down is not among these). */
const IMAGE_MISSING =
  /not found|manifest unknown|pull access denied|repository does not exist|no such image/i;

/**
 * Why the server's pod is not ready. Terminal: its image cannot be had, or its container keeps
 * exiting (at least `crashLoopAfter` restarts while in CrashLoopBackOff).
 */
export function summarizePods(pods: unknown[], crashLoopAfter: number): PodSummary {
  const list = pods as PodLike[];
  if (list.length === 0) return { ready: false, reason: 'no pod yet', terminal: false };
  let reason: string | undefined;
  let terminal = false;
  for (const pod of list) {
    const name = pod.metadata?.name ?? 'pod';
    const statuses = pod.status?.containerStatuses ?? [];
    if (statuses.length > 0 && statuses.every((c) => c.ready)) return { ready: true, terminal: false };
    for (const c of statuses) {
      const waiting = c.state?.waiting;
      const last = c.lastState?.terminated;
      if (waiting?.reason) {
        const restarts = c.restartCount ?? 0;
        const exit = last ? `; last exit code ${last.exitCode ?? '?'} (${last.reason ?? 'terminated'})` : '';
        reason = `pod ${name}: ${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}${restarts ? `; restarted ${restarts} times` : ''}${exit}`;
        if (NEVER_PULLS.has(waiting.reason)) terminal = true;
        if (PULL_FAILS.has(waiting.reason) && IMAGE_MISSING.test(waiting.message ?? '')) terminal = true;
        if (waiting.reason === 'CrashLoopBackOff' && restarts >= crashLoopAfter) terminal = true;
      }
    }
    const unschedulable = pod.status?.conditions?.find(
      (c) => c.type === 'PodScheduled' && c.status === 'False',
    );
    if (!reason && unschedulable) {
      reason =
        `pod ${name}: not scheduled: ${unschedulable.reason ?? ''} ${unschedulable.message ?? ''}`.trim();
    }
    if (!reason) reason = `pod ${name}: ${pod.status?.phase ?? 'Pending'}, not ready`;
  }
  return { ready: false, reason, terminal };
}

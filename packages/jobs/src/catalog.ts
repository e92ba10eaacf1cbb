// The job catalog: every queue, every job name and its payload schema. Producers and the worker
// both go through it, so a payload is checked when it is added and again before its handler runs.
// Payloads outlive deploys: new fields are optional, a rename is a new job name. Payloads never
// carry secrets — only ids, which the handler re-reads from the catalog.
import { z } from 'zod';

export const QUEUES = ['provisioning', 'monitoring', 'maintenance'] as const;
export type QueueName = (typeof QUEUES)[number];

export const JOBS = {
  'provision-server': {
    queue: 'provisioning',
    payload: z.object({ server_id: z.uuid() }),
  },
  'grow-shared-capacity': {
    queue: 'provisioning',
    payload: z.object({ reason: z.string().max(200).optional() }),
  },
} as const satisfies Record<string, { queue: QueueName; payload: z.ZodType }>;

export type JobName = keyof typeof JOBS;
export type JobPayload<N extends JobName> = z.infer<(typeof JOBS)[N]['payload']>;

/**
 * Deterministic job ids make single-flight work: while a job with the id exists, adding it again
 * is a no-op. BullMQ forbids ':' in custom ids.
 */
export function jobIdFor<N extends JobName>(name: N, payload: JobPayload<N>): string {
  switch (name) {
    case 'provision-server':
      return `provision-server-${(payload as JobPayload<'provision-server'>).server_id}`;
    case 'grow-shared-capacity':
      return 'grow-shared-capacity';
    default:
      throw new Error(`no job id rule for ${String(name)}`);
  }
}

export function parsePayload<N extends JobName>(name: N, data: unknown): JobPayload<N> {
  return JOBS[name].payload.parse(data) as JobPayload<N>;
}

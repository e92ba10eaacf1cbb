// The job definitions: every queue, every job name and its payload schema. Producers and the worker
// both go through it, so a payload is checked when it is added and again before its handler runs.
// Payloads outlive deploys: new fields are optional, a rename is a new job name. Payloads never
// carry secrets — only ids, which the handler re-reads from the catalog.
import { z } from 'zod';

/** The queues database-worker consumes (and only these: each process names its own). */
/** `data`: long per-tenant work (moves, usage sampling), apart so provisioning and health checks never wait behind it. */
export const WORKER_QUEUES = ['provisioning', 'monitoring', 'maintenance', 'data'] as const;
/**
 * The queues instance-service consumes: its instances' work, and callback deliveries apart (their
 * own concurrency), so receivers that are slow or hang never hold up signups.
 */
export const INSTANCE_QUEUES = ['instances', 'callbacks'] as const;
export const QUEUES = [...WORKER_QUEUES, ...INSTANCE_QUEUES] as const;
export type QueueName = (typeof QUEUES)[number];
export type WorkerQueueName = (typeof WORKER_QUEUES)[number];

const serverJob = z.object({ server_id: z.uuid() });
const instanceJob = z.object({ instance_id: z.uuid() });
const noPayload = z.object({});
const moveJob = z.object({ move_id: z.uuid() });

export const JOBS = {
  /** Create the orchestrator object, wait for a real login, then initializing → active. */
  'provision-server': { queue: 'provisioning', payload: serverJob, attempts: 3 },
  /** Capacity planner: keep free shared slots at or above the configured headroom. */
  'grow-shared-capacity': {
    queue: 'provisioning',
    payload: z.object({ reason: z.string().max(200).optional() }),
  },
  /** Keep N pre-created (warm) databases on one active shared pool, or on all of them. */
  'refill-warm-databases': { queue: 'provisioning', payload: z.object({ server_id: z.uuid().optional() }) },
  /** Remove an empty server through its driver: decommissioning → decommissioned. */
  'decommission-server': { queue: 'provisioning', payload: serverJob },
  /** Fan out one health-check-server job per checkable server. */
  'health-check-all': { queue: 'monitoring', payload: noPayload },
  'health-check-server': { queue: 'monitoring', payload: serverJob },
  /** Remove servers in error that hold no tenants (including ones that failed to provision). */
  'cleanup-failed-servers': { queue: 'maintenance', payload: noPayload },
  /** Fan out one sample-usage-server job per serving server, spread over the sampling period. */
  'sample-usage-all': { queue: 'data', payload: noPayload },
  /** Measure every ready tenant of one server (one connection), store it, climb the quota ladder. */
  'sample-usage-server': { queue: 'data', payload: serverJob, attempts: 1 },
  /**
   * Bring every ready tenant of a plan in step with it after an admin changed it: connection
   * limit and guardrails on its server, and a restricted tenant the new quota fits is lifted.
   */
  'apply-plan': {
    queue: 'data',
    payload: z.object({ plan_tier: z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/) }),
  },
  /**
   * Advance a tenant move phase by phase (tenant_moves: the record is the truth); in its grace
   * period it waits delayed, then drops the source. The data queue has its own concurrency, so long
   * copies never hold up provisioning or health checks.
   */
  'move-tenant': { queue: 'data', payload: moveJob, attempts: 20 },
  /**
   * One pg_dump -Fc of a tenant into the backup store (backups: the row, made running by whoever
   * asked, is the truth). A row is completed only with its object whole; one whose attempts are
   * used up is failed and its object deleted.
   */
  'backup-tenant': { queue: 'data', payload: z.object({ backup_id: z.uuid() }), attempts: 3 },
  /** Start the backups that are due (per plan interval, capped per server) and apply retention. */
  'schedule-backups': { queue: 'data', payload: noPayload },
  /**
   * Restore drills: a sample of recent backups restored into scratch databases, checked against
   * their manifests (digest, archive entries, rows per table), dropped; the result recorded.
   */
  'verify-backups': { queue: 'data', payload: noPayload, attempts: 1 },
  /**
   * Advance a restore (tenant_restores) phase by phase: into a new database, then swapped in; in
   * its grace period it waits delayed, then drops the replaced database.
   */
  'restore-tenant': { queue: 'data', payload: z.object({ restore_id: z.uuid() }), attempts: 10 },
  /**
   * One step of a server's drain (db_servers.status draining: the row is the truth): drop its warm
   * databases, start moves off it up to TENANTDB_MOVES_PER_SERVER, record what is blocked; then
   * again after TENANTDB_DRAIN_STEP_MS (delayed), until nothing is left (drained) or the drain is
   * stopped (uncordon). A step is short catalog work, so the moves' data-queue slots stay free.
   */
  'drain-server': { queue: 'maintenance', payload: serverJob, attempts: 20 },
  /** Catalog vs orchestrator vs pg_database: report drift, remove what tenantdb made and lost. */
  reconcile: { queue: 'maintenance', payload: noPayload },
  /**
   * instance-service: allocate the instance's database; on "provisioning" wait retry_after and ask
   * again, up to the configured bound, then ready or failed.
   */
  'wait-for-database': { queue: 'instances', payload: instanceJob },
  /** instance-service: release the database of a failed or deleted instance, and make sure it stays so. */
  'release-database': { queue: 'instances', payload: instanceJob },
  /**
   * instance-service: POST the final state to the instance's callback_url, signed. (Jobs added to
   * `instances` by an older release still run: instance-service consumes both queues.)
   */
  'deliver-callback': { queue: 'callbacks', payload: instanceJob },
  /**
   * instance-service: POST a change of a tenant's access (quota ladder, suspension) or of its
   * address (database.moved, after a move's cut-over: instance-service reads the new address from
   * database-service and stores it first) to its instance's callback_url, signed like
   * deliver-callback. Sent by database-service and database-worker; one per transition or
   * cut-over (delivery_id is the job id).
   */
  'deliver-tenant-event': {
    queue: 'callbacks',
    payload: z.object({
      instance_id: z.uuid(),
      event: z.enum([
        'database.quota_ok',
        'database.quota_warned',
        'database.quota_restricted',
        'database.suspended',
        'database.resumed',
        'database.moved',
      ]),
      occurred_at: z.iso.datetime(),
      delivery_id: z.string().regex(/^[A-Za-z0-9_-]{1,120}$/),
    }),
  },
  /** instance-service: re-enqueue the work of every instance that is not settled (lost jobs). */
  'sweep-instances': { queue: 'instances', payload: noPayload },
} as const satisfies Record<string, { queue: QueueName; payload: z.ZodType; attempts?: number }>;

export type JobName = keyof typeof JOBS;
export type JobPayload<N extends JobName> = z.infer<(typeof JOBS)[N]['payload']>;
/** The jobs of some queues: what one consumer process handles. */
export type JobsOf<Q extends QueueName> = {
  [N in JobName]: (typeof JOBS)[N]['queue'] extends Q ? N : never;
}[JobName];
export type WorkerJobName = JobsOf<WorkerQueueName>;
export type InstanceJobName = JobsOf<(typeof INSTANCE_QUEUES)[number]>;

/**
 * Deterministic job ids make single-flight work: while a job with the id exists, adding it again
 * is a no-op. BullMQ forbids ':' in custom ids.
 */
export function jobIdFor<N extends JobName>(name: N, payload: JobPayload<N>): string {
  const {
    server_id: serverId,
    instance_id: instanceId,
    delivery_id: deliveryId,
    plan_tier: planTier,
    move_id: moveId,
    backup_id: backupId,
    restore_id: restoreId,
  } = payload as {
    backup_id?: string;
    restore_id?: string;
    plan_tier?: string;
    server_id?: string;
    instance_id?: string;
    delivery_id?: string;
    move_id?: string;
  };
  const id = deliveryId ?? serverId ?? instanceId ?? moveId ?? backupId ?? restoreId ?? planTier;
  return id ? `${name}-${id}` : name;
}

/**
 * Jobs whose id only guards against running twice at once: once finished (even failed) the id
 * must be free again, or the next run would be silently dropped.
 */
export const SINGLE_FLIGHT: ReadonlySet<JobName> = new Set<JobName>([
  'grow-shared-capacity',
  'refill-warm-databases',
  // The row's status is the truth: a failed attempt must not block an operator's retry.
  'decommission-server',
  'health-check-all',
  'health-check-server',
  'cleanup-failed-servers',
  'reconcile',
  'sample-usage-all',
  'sample-usage-server',
  'apply-plan',
  // The move's record is the truth: a job that gave up must not keep reconcile from resuming it.
  'move-tenant',
  // The backup's and the restore's records are the truth, as a move's.
  'backup-tenant',
  'restore-tenant',
  'schedule-backups',
  'verify-backups',
  // The server's status is the truth: reconcile re-enqueues a drain whose job gave up.
  'drain-server',
  // instance-service: the instance row is the truth; a job that gave up must not block the sweep.
  'wait-for-database',
  'release-database',
  'deliver-callback',
  'sweep-instances',
]);

export function isJobName(name: string): name is JobName {
  return Object.hasOwn(JOBS, name);
}

/** A job name of one of the given queues (a consumer refuses names that belong elsewhere). */
export function isJobOf<Q extends QueueName>(queues: readonly Q[], name: string): name is JobsOf<Q> {
  return isJobName(name) && (queues as readonly QueueName[]).includes(JOBS[name].queue);
}

export function parsePayload<N extends JobName>(name: N, data: unknown): JobPayload<N> {
  return JOBS[name].payload.parse(data) as JobPayload<N>;
}

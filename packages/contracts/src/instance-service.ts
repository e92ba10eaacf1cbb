// The API of instance-service (what the signup portal calls): request and response bodies shared
// by the routes (validation, OpenAPI) and by clients. Responses list their fields explicitly.
import { z } from 'zod';
import { displayName, freeText, planTier, uuid } from './common';

export const INSTANCE_STATUS = z.enum([
  'pending',
  'waiting_for_database',
  'ready',
  'failed',
  'deleting',
  'deleted',
]);
export type InstanceStatus = z.infer<typeof INSTANCE_STATUS>;

/** A name a person reads: no control, bidi-control or zero-width characters; not trimmed here. */
const instanceName = displayName(100);

/** Where the final state is POSTed: http(s) only, no credentials in the URL, bounded length. */
export const callbackUrl = freeText(2048).refine((raw) => {
  try {
    const url = new URL(raw);
    return (url.protocol === 'http:' || url.protocol === 'https:') && !url.username && !url.password;
  } catch {
    return false;
  }
}, 'an http or https URL without user or password');

export const CreateInstanceRequest = z.strictObject({
  customer_id: uuid,
  name: instanceName,
  plan_tier: planTier,
  callback_url: callbackUrl.optional(),
});
export type CreateInstanceRequest = z.infer<typeof CreateInstanceRequest>;

/** Headers of the create request; other headers pass. */
export const CreateInstanceHeaders = z.object({
  'idempotency-key': z
    .string()
    .regex(/^[\x21-\x7e]{1,255}$/, '1–255 printable ASCII characters')
    .optional()
    .describe('a repeat with the same key and body answers the same instance; another body: 422'),
});

/** Every route that names an instance also names its customer: another customer's id is 404. */
export const CustomerQuery = z.strictObject({ customer_id: uuid });
export const InstanceIdParams = z.strictObject({ id: uuid });

export const ListInstancesQuery = z.strictObject({
  customer_id: uuid,
  status: INSTANCE_STATUS.optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});

export const Instance = z.object({
  id: uuid,
  customer_id: uuid,
  name: z.string(),
  plan_tier: z.string(),
  status: INSTANCE_STATUS,
  wait_reason: z.string().nullable().describe('why the instance is still waiting for its database'),
  error: z.string().nullable().describe('why the instance failed'),
  db_host: z.string().nullable(),
  db_port: z.number().int().nullable(),
  db_name: z.string().nullable(),
  db_user: z.string().nullable(),
  callback_url: z.string().nullable(),
  callback_status: z.enum(['pending', 'delivered', 'failed']).nullable(),
  created_at: z.iso.datetime(),
  updated_at: z.iso.datetime(),
  ready_at: z.iso.datetime().nullable(),
  failed_at: z.iso.datetime().nullable(),
  deleted_at: z.iso.datetime().nullable(),
});
export type Instance = z.infer<typeof Instance>;

export const InstanceList = z.object({
  instances: z.array(Instance),
  total_count: z.number().int(),
  limit: z.number().int(),
  offset: z.number().int(),
});
export type InstanceList = z.infer<typeof InstanceList>;

export const InstanceCredentials = z.object({
  instance_id: uuid,
  db_host: z.string(),
  db_port: z.number().int(),
  db_name: z.string(),
  db_user: z.string(),
  db_password: z.string(),
  sslmode: z
    .enum(['verify-full'])
    .optional()
    .describe('how to connect: sent when the server serves TLS with a fleet-CA certificate'),
  ssl_root_cert: z
    .string()
    .optional()
    .describe('PEM of the CA to verify the server with (libpq sslrootcert)'),
});
export type InstanceCredentials = z.infer<typeof InstanceCredentials>;

/**
 * The body POSTed to callback_url once an instance is ready or failed. The bytes are signed:
 * `X-Tenantdb-Signature: sha256=<hex HMAC-SHA256 of the raw body under TENANTDB_CALLBACK_SECRET>`.
 */
export const InstanceCallback = z.object({
  event: z.enum(['instance.ready', 'instance.failed']),
  occurred_at: z.iso.datetime(),
  instance: Instance.pick({
    id: true,
    customer_id: true,
    name: true,
    plan_tier: true,
    error: true,
    db_host: true,
    db_port: true,
    db_name: true,
    db_user: true,
  }).extend({ status: z.enum(['ready', 'failed']) }),
});
export type InstanceCallback = z.infer<typeof InstanceCallback>;

/** POST /api/v1/instances/{id}/suspend · /resume: the instance and whether it is suspended now. */
export const InstanceSuspension = z.object({ id: uuid, suspended: z.boolean() });

/** POST /api/v1/instances/{id}/plan: the plan to change to. */
export const InstancePlanRequest = z.strictObject({ plan_tier: planTier });
export type InstancePlanRequest = z.infer<typeof InstancePlanRequest>;

/**
 * The answer to a plan change: `applied` (200; within the placement, in effect now) or `moving`
 * (202; shared ⇄ dedicated: the database moves, and a `database.moved` callback says when it is
 * on its new address with the new plan; until then plan_tier is the old one).
 */
export const InstancePlanChange = z.object({
  id: uuid,
  status: z.enum(['applied', 'moving']),
  plan_tier: z.string().describe("the instance's plan now"),
  requested_plan_tier: z.string(),
  move_id: uuid.nullable(),
});
export type InstancePlanChange = z.infer<typeof InstancePlanChange>;

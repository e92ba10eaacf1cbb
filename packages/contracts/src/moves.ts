// The admin API of tenant moves (database-service, docs/api.md "Moves"): start a move of one
// allocation, read it with its progress, list moves, cancel one that has not cut over.
import { z } from 'zod';
import { uuid } from './common';

export const MOVE_PHASE = z.enum([
  'awaiting_target',
  'pending',
  'copying_schema',
  'syncing',
  'cutting_over',
  'cleaning_up',
  'grace',
  'dropping_source',
  'done',
  'cancelling',
  'cancelled',
  'failing',
  'failed',
]);

export const StartMoveRequest = z.strictObject({
  instance_id: uuid.describe('the allocation to move (its live tenant database)'),
  target_server_id: uuid
    .optional()
    .describe('where to; omitted: a shared pool with room, by the placement rules (priority, strategy)'),
});
export type StartMoveRequest = z.infer<typeof StartMoveRequest>;

export const Move = z.object({
  id: uuid,
  tenant_database_id: uuid,
  instance_id: uuid.nullable(),
  source_server_id: uuid,
  target_server_id: uuid,
  phase: MOVE_PHASE,
  method: z.enum(['logical', 'dump']).nullable().describe('how the data went; chosen when the copy starts'),
  method_reason: z.string().nullable(),
  progress: z.object({
    tables_total: z.number().int().nullable(),
    tables_synced: z.number().int().nullable(),
    bytes_total: z.number().int().nullable().describe('size of the source database'),
    bytes_copied: z
      .number()
      .int()
      .nullable()
      .describe('size of the target database (logical), or the archive (dump)'),
    lag_bytes: z.number().int().nullable().describe('WAL the subscription has not confirmed yet'),
  }),
  write_blocked_ms: z.number().int().nullable().describe("how long the cut-over blocked the tenant's writes"),
  cancel_requested: z.boolean(),
  error: z.string().nullable(),
  requested_by: z.string(),
  created_at: z.iso.datetime(),
  updated_at: z.iso.datetime(),
  cut_over_at: z.iso.datetime().nullable(),
  drop_source_after: z.iso.datetime().nullable().describe('end of the grace period of the closed source'),
  finished_at: z.iso.datetime().nullable(),
  plan_tier: z
    .string()
    .nullable()
    .describe("a plan change's move: the plan the allocation has from its cut-over on"),
});
export type Move = z.infer<typeof Move>;

/**
 * A plan change that changes placement (shared ⇄ dedicated): 202 with the move that carries it
 * (a dedicated server is provisioned first: the move waits in awaiting_target until it is active).
 */
export const PlanChangeStarted = z.object({
  instance_id: uuid,
  from_plan_tier: z.string().nullable(),
  plan_tier: z.string(),
  move: Move,
});
export type PlanChangeStarted = z.infer<typeof PlanChangeStarted>;

export const MoveList = z.object({ moves: z.array(Move), total_count: z.number().int() });
export type MoveList = z.infer<typeof MoveList>;

export const MovesQuery = z.strictObject({
  phase: MOVE_PHASE.optional(),
  server_id: uuid.optional().describe('moves from or to this server'),
  instance_id: uuid.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});
export type MovesQuery = z.infer<typeof MovesQuery>;

export const MoveParams = z.strictObject({ id: uuid });

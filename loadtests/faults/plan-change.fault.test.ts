// Plan changes under faults: a tenant changing to a dedicated plan while a client writes to it,
// with every database-worker SIGKILLed while the move waits for its dedicated server to be
// provisioned (awaiting_target), or while it copies (syncing), both restarted. Afterwards the
// tenant is served from its dedicated server with the new plan and every acknowledged write, and
// the invariants (slots, moves, servers) hold once the reconciler has run.
import type { MovePhase } from '@tenantdb/catalog';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { movingTenant } from './moving-tenant';
import { type FaultStack, startFaultStack, waitUntil } from './stack';

let s: FaultStack;
let tenant: ReturnType<typeof movingTenant>;
beforeAll(async () => {
  s = await startFaultStack({ TENANTDB_MOVE_GRACE_MS: '2000' });
  tenant = movingTenant(s);
  await s.waitForCapacity(5);
});
afterAll(async () => {
  await s?.close();
});

const KILL_IN: MovePhase[] = ['awaiting_target', 'syncing'];

describe('a plan change to a dedicated plan with every worker SIGKILLed', () => {
  for (const phase of KILL_IN) {
    it(`SIGKILL in ${phase}: on its dedicated server with the new plan and every acknowledged write`, async () => {
      let seeded: Awaited<ReturnType<typeof tenant.seeded>> | undefined;
      let landedIn = '';
      const report = await s.underLoad(
        {
          name: `database-worker SIGKILL during a plan change to dedicated (${phase})`,
          injected: `a tenant changing to a dedicated plan under writes; both workers SIGKILLed once its move is in ${phase}, restarted`,
        },
        async () => {
          seeded = await tenant.seeded();
          const { ids } = seeded;
          const started = await s.admin('POST', `/api/database/admin/allocations/${ids.instance_id}/plan`, {
            plan_tier: 'premium',
          });
          expect(started.status, JSON.stringify(started.body)).toBe(202);
          const moveId = started.body.move.id as string;
          // awaiting_target itself, not past it: otherwise that case would kill a later phase.
          await tenant.waitForPhase(moveId, phase, {
            exact: phase === 'awaiting_target',
            timeoutMs: 120_000,
          });
          await s.workers.kill();
          landedIn = await tenant.phaseOf(moveId);
          await s.workers.start();
          await waitUntil(
            async () => (await tenant.phaseOf(moveId)) === 'done',
            240_000,
            'the plan change to finish',
          );
        },
      );
      await seeded?.writer.stop();
      console.log(
        `plan change SIGKILL aimed at ${phase}, landed in ${landedIn}; ${seeded?.writer.acked.length} writes acknowledged`,
      );
      expect(report.violations).toEqual([]);
      const row = await s.db
        .selectFrom('tenant_databases as t')
        .innerJoin('db_servers as d', 'd.id', 't.db_server_id')
        .select(['t.plan_tier', 't.connection_limit', 'd.server_type', 'd.dedicated_to_instance_id'])
        .where('t.instance_id', '=', seeded!.ids.instance_id)
        .where('t.status', '=', 'ready')
        .executeTakeFirstOrThrow();
      expect(row).toEqual({
        plan_tier: 'premium',
        connection_limit: 100,
        server_type: 'dedicated',
        dedicated_to_instance_id: seeded!.ids.instance_id,
      });
      await tenant.verifyData(seeded!);
    });
  }
});

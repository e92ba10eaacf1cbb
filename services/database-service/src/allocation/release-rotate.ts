// Release (drop the database and role, free the slot) and rotation (a new password) of a live
// allocation. The two meet on the pool server's role, so they are serialized by the rotation lock.
import {
  type AuditRepo,
  type CatalogDb,
  LOCK_KEYS,
  MOVE_LOCKS_TENANT_PHASES,
  type MovesRepo,
  RESTORE_LOCKS_TENANT_PHASES,
  type RestoresRepo,
  type ServersRepo,
  type TenantDatabasesRepo,
  trySessionLock,
  waitSessionLock,
} from '@tenantdb/catalog';
import type { Rotated } from '@tenantdb/contracts';
import { ConflictError, NotFoundError, type RequestContext, UnavailableError } from '@tenantdb/http';
import { PoolServerUnavailableError, type TenantOps } from '@tenantdb/pool-server';
import { generatePassword, type SecretBox } from '@tenantdb/secrets';
import type { AllocationConfig } from './allocation.service';
import type { Answers } from './answers';

export interface ReleaseRotateDeps {
  db: CatalogDb;
  servers: Pick<ServersRepo, 'findById'>;
  tenants: Pick<
    TenantDatabasesRepo,
    'findLiveByInstance' | 'transition' | 'leaveSlot' | 'setPendingPassword' | 'settlePendingPassword'
  >;
  audit: Pick<AuditRepo, 'record' | 'audited'>;
  moves: Pick<MovesRepo, 'findActiveForTenant'>;
  restores: Pick<RestoresRepo, 'findActiveForTenant'>;
  secrets: Pick<SecretBox, 'encrypt'>;
  tenantOps: Pick<TenantOps, 'drop' | 'setPassword'>;
  answers: Pick<Answers, 'credentials'>;
  config: Pick<AllocationConfig, 'releaseLockTimeoutMs'>;
}

export function createReleaseRotate(deps: ReleaseRotateDeps) {
  const { db, servers, tenants, audit, moves, restores, secrets, tenantOps, answers, config } = deps;

  /**
   * A move of the tenant that has not reached its grace period holds the tenant's role and
   * database on two servers: a rotation or release now would meet its role copy, its cut-over or
   * its clean-up half way, so they are refused (409, retry later). Checked under the rotation
   * lock, which the start of a move takes too.
   */
  async function refuseWhileMoving(tenantDatabaseId: string, conn: CatalogDb): Promise<void> {
    const move = await moves.findActiveForTenant(tenantDatabaseId, conn);
    if (move && (MOVE_LOCKS_TENANT_PHASES as readonly string[]).includes(move.phase))
      throw new ConflictError(`the allocation is being moved (move ${move.id}, ${move.phase}); retry later`);
    // A restore swaps the tenant's database by name and blocks its logins for the swap: the same.
    const restore = await restores.findActiveForTenant(tenantDatabaseId, conn);
    if (restore && (RESTORE_LOCKS_TENANT_PHASES as readonly string[]).includes(restore.phase))
      throw new ConflictError(
        `the allocation is being restored (restore ${restore.id}, ${restore.phase}); retry later`,
      );
  }

  /**
   * Runs `fn` holding an allocation's rotation lock: an advisory lock on a catalog session (not a
   * transaction; `fn` gets that session), taken by every rotation and by the start of a release.
   * 'try' answers 409 when it is held; 'wait' waits for it (a rotation is one ALTER ROLE and one
   * update), but no longer than releaseLockTimeoutMs while it holds a catalog connection: then
   * 503 with Retry-After, nothing changed.
   */
  async function holdingRotationLock<T>(
    tenantDatabaseId: string,
    mode: 'try' | 'wait',
    fn: (conn: CatalogDb) => Promise<T>,
  ): Promise<T> {
    const key = LOCK_KEYS.rotation(tenantDatabaseId);
    if (mode === 'wait') {
      const attempt = await waitSessionLock(db, key, config.releaseLockTimeoutMs, fn);
      if (!attempt.acquired)
        throw new UnavailableError('this allocation is being rotated; nothing was changed, retry', 1);
      return attempt.value;
    }
    const attempt = await trySessionLock(db, key, fn);
    if (!attempt.acquired) throw new ConflictError('this allocation is being rotated or released; retry');
    return attempt.value;
  }

  return {
    /** Drop the database and role, free the slot. Already gone is success. */
    async release(instanceId: string, ctx: RequestContext): Promise<void> {
      const row = await tenants.findLiveByInstance(instanceId);
      if (!row) return;
      if (row.status === 'creating')
        throw new ConflictError('the allocation is still being created; retry shortly');
      // A rotation in flight is changing the role's password on the pool server: the release waits
      // for it (the rotation's lock), so that its ALTER ROLE never meets the drop; a rotation that
      // comes later finds the allocation releasing.
      const releasing =
        row.status === 'releasing'
          ? row
          : await holdingRotationLock(row.id, 'wait', async (conn) => {
              await refuseWhileMoving(row.id, conn);
              return tenants.transition(row.id, ['ready'], 'releasing', {}, conn);
            });
      if (!releasing) throw new ConflictError('the allocation changed concurrently; retry');
      const server = await servers.findById(row.db_server_id);
      if (server) {
        try {
          await tenantOps.drop(server, { dbName: row.db_name, dbUser: row.db_user });
        } catch (err) {
          if (err instanceof PoolServerUnavailableError) {
            throw new UnavailableError('the pool server is unreachable; the release will complete on retry');
          }
          throw err;
        }
      }
      await audit.audited(
        (trx) => tenants.leaveSlot(row.id, ['releasing'], 'released', {}, trx),
        () => ({
          actor: ctx.actor,
          action: 'allocation.release',
          request_id: ctx.requestId,
          instance_id: instanceId,
          db_server_id: row.db_server_id,
          tenant_database_id: row.id,
        }),
      );
    },

    /**
     * A new password, in an order a crash at any point can recover from: stored as pending in the
     * catalog, then applied on the pool server, then promoted to the row's password. A row left
     * with a pending password is answered 503 (its password is uncertain) until reconcile settles
     * it, or until the next rotation, which applies a password of its own. Rotations of one
     * allocation, and the start of its release, are serialized by the rotation lock.
     */
    async rotate(instanceId: string, ctx: RequestContext): Promise<Rotated> {
      const row = await tenants.findLiveByInstance(instanceId);
      if (!row) throw new NotFoundError('no live allocation for this instance_id');
      if (row.status !== 'ready') throw new ConflictError(`the allocation is ${row.status}`);
      const server = await servers.findById(row.db_server_id);
      if (!server) throw new UnavailableError('the server of this allocation is missing from the catalog');
      return holdingRotationLock(row.id, 'try', async (conn) => {
        const current = await tenants.findLiveByInstance(instanceId, conn);
        if (current?.id !== row.id || current.status !== 'ready')
          throw new ConflictError('the allocation changed; retry');
        // Setting a password also sets LOGIN on the server: it would undo the suspension.
        if (current.suspended_at) throw new ConflictError('the allocation is suspended; resume it first');
        await refuseWhileMoving(row.id, conn);
        const password = generatePassword();
        const pendingEnc = secrets.encrypt(password, row.id);
        if (!(await tenants.setPendingPassword(row.id, pendingEnc, conn)))
          throw new ConflictError('the allocation changed; retry');
        try {
          await tenantOps.setPassword(server, row.db_user, password);
        } catch (err) {
          // Whether the server applied it is unknown: the pending password stays for reconcile.
          if (err instanceof PoolServerUnavailableError)
            throw new UnavailableError('the pool server is unreachable');
          throw err;
        }
        if (!(await tenants.settlePendingPassword(row.id, pendingEnc, 'promote', conn)))
          throw new ConflictError('the allocation changed; retry');
        await audit.record(
          {
            actor: ctx.actor,
            action: 'allocation.rotate',
            request_id: ctx.requestId,
            instance_id: instanceId,
            db_server_id: server.id,
            tenant_database_id: row.id,
          },
          conn,
        );
        return {
          status: 'rotated',
          ...(await answers.credentials(server, {
            ...row,
            password_enc: pendingEnc,
            password_pending_enc: null,
          })),
        };
      });
    },
  };
}

// Release (drop the database and role, free the slot) and rotation (a new password) of a live
// allocation. The two meet on the pool server's role, so they are serialized by the rotation lock.
import {
  type AuditRepo,
  type CatalogDb,
  LOCK_KEYS,
  type ServersRepo,
  type TenantDatabasesRepo,
  trySessionLock,
  withSessionLock,
} from '@tenantdb/catalog';
import type { Rotated } from '@tenantdb/contracts';
import { ConflictError, NotFoundError, type RequestContext, UnavailableError } from '@tenantdb/http';
import { PoolServerUnavailableError, type TenantOps } from '@tenantdb/pool-server';
import { generatePassword, type SecretBox } from '@tenantdb/secrets';
import type { Answers } from './answers';

export interface ReleaseRotateDeps {
  db: CatalogDb;
  servers: Pick<ServersRepo, 'findById'>;
  tenants: Pick<TenantDatabasesRepo, 'findLiveByInstance' | 'transition' | 'leaveSlot' | 'updatePassword'>;
  audit: Pick<AuditRepo, 'record' | 'audited'>;
  secrets: Pick<SecretBox, 'encrypt' | 'decrypt'>;
  tenantOps: Pick<TenantOps, 'drop' | 'setPassword'>;
  answers: Pick<Answers, 'credentials'>;
}

export function createReleaseRotate(deps: ReleaseRotateDeps) {
  const { db, servers, tenants, audit, secrets, tenantOps, answers } = deps;

  /**
   * Runs `fn` holding an allocation's rotation lock: an advisory lock on a catalog session (not a
   * transaction; `fn` gets that session), taken by every rotation and by the start of a release.
   * 'try' answers 409 when it is held; 'wait' waits for it (a rotation is one ALTER ROLE and one
   * update).
   */
  async function holdingRotationLock<T>(
    tenantDatabaseId: string,
    mode: 'try' | 'wait',
    fn: (conn: CatalogDb) => Promise<T>,
  ): Promise<T> {
    const key = LOCK_KEYS.rotation(tenantDatabaseId);
    if (mode === 'wait') return withSessionLock(db, key, fn);
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
          : await holdingRotationLock(row.id, 'wait', (conn) =>
              tenants.transition(row.id, ['ready'], 'releasing', {}, conn),
            );
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
     * A new password, applied on the server before it is stored and returned. Rotations of one
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
        const password = generatePassword();
        try {
          await tenantOps.setPassword(server, row.db_user, password);
        } catch (err) {
          if (err instanceof PoolServerUnavailableError)
            throw new UnavailableError('the pool server is unreachable');
          throw err;
        }
        try {
          await tenants.updatePassword(row.id, secrets.encrypt(password), conn);
        } catch (err) {
          // Not stored: put the stored password back so the catalog and the server agree.
          await tenantOps
            .setPassword(server, row.db_user, secrets.decrypt(current.password_enc))
            .catch(() => {});
          throw err;
        }
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
          ...(await answers.credentials(server, { ...row, password_enc: secrets.encrypt(password) })),
        };
      });
    },
  };
}

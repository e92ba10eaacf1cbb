// Reads of an allocation: its status (no password), and its credentials read again (audited).
// Neither writes anything but the audit event: a read has its own route, never allocate's.
import type { AuditRepo, ServersRepo, TenantDatabasesRepo } from '@tenantdb/catalog';
import type { Allocation, AllocationCredentials } from '@tenantdb/contracts';
import { ConflictError, NotFoundError, type RequestContext, UnavailableError } from '@tenantdb/http';
import type { Answers } from './answers';

export interface ReadsDeps {
  servers: Pick<ServersRepo, 'findById'>;
  tenants: Pick<TenantDatabasesRepo, 'findLatestByInstance' | 'findLiveByInstance'>;
  audit: Pick<AuditRepo, 'record'>;
  answers: Pick<Answers, 'credentials'>;
}

export function createReads(deps: ReadsDeps) {
  const { servers, tenants, audit, answers } = deps;

  return {
    async get(instanceId: string): Promise<Allocation> {
      const row = await tenants.findLatestByInstance(instanceId);
      if (!row) throw new NotFoundError('no allocation for this instance_id');
      const server = await servers.findById(row.db_server_id);
      return {
        instance_id: instanceId,
        customer_id: row.customer_id,
        tenant_database_id: row.id,
        db_server_id: row.db_server_id,
        db_host: server?.host ?? null,
        db_port: server?.port ?? null,
        db_name: row.db_name,
        db_user: row.db_user,
        plan_tier: row.plan_tier,
        status: row.status as Allocation['status'],
        connection_limit: row.connection_limit,
        created_at: row.created_at.toISOString(),
        ready_at: row.ready_at?.toISOString() ?? null,
        released_at: row.released_at?.toISOString() ?? null,
      };
    },

    /**
     * The password of a ready allocation, as allocate answered it, without allocate's side effects
     * (a missing allocation is 404 here, never a new database). Every read is audited before the
     * password is returned.
     */
    async credentials(instanceId: string, ctx: RequestContext): Promise<AllocationCredentials> {
      const row = await tenants.findLiveByInstance(instanceId);
      if (!row) throw new NotFoundError('no live allocation for this instance_id');
      if (row.status !== 'ready') {
        throw new ConflictError(
          `the allocation is ${row.status}; credentials are available once it is ready`,
        );
      }
      const server = await servers.findById(row.db_server_id);
      if (!server) throw new UnavailableError('the server of this allocation is missing from the catalog');
      const credentials = await answers.credentials(server, row);
      await audit.record({
        actor: ctx.actor,
        action: 'allocation.read_credentials',
        request_id: ctx.requestId,
        instance_id: instanceId,
        db_server_id: server.id,
        tenant_database_id: row.id,
      });
      return { instance_id: instanceId, ...credentials };
    },
  };
}

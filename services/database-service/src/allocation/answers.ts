// The answers allocation gives, shared by shared and dedicated placement: credentials read from a
// row, the 202 body, and the answer for an instance that already has a live allocation.
import type { ServerAddress, ServersRepo, TenantDatabase, TenantDatabasesRepo } from '@tenantdb/catalog';
import type { Allocated, Provisioning } from '@tenantdb/contracts';
import { ConflictError, UnavailableError } from '@tenantdb/http';
import type { SecretBox } from '@tenantdb/secrets';
import type { AllocationConfig } from './allocation.service';

/** How long a duplicate request waits for the one already creating the same database. */
const DUPLICATE_WAIT_MS = 15_000;

export interface AnswersDeps {
  servers: Pick<ServersRepo, 'findById'>;
  tenants: Pick<TenantDatabasesRepo, 'findLiveByInstance'>;
  secrets: Pick<SecretBox, 'decrypt'>;
  config: Pick<AllocationConfig, 'retryAfterSeconds'>;
}

export type Answers = ReturnType<typeof createAnswers>;

/** What every answer with a password carries (allocate, provision-dedicated, rotate, the read). */
export type Credentials = Required<Omit<Allocated, 'status'>>;

export function createAnswers(deps: AnswersDeps) {
  const { servers, tenants, secrets, config } = deps;

  function credentials(server: ServerAddress, row: TenantDatabase): Credentials {
    if (!server.host || !server.port)
      throw new UnavailableError('the server of this allocation has no address');
    // A rotation in flight, or one that crashed before settling: which password the role has is
    // not known until it settles (reconcile), and an answer never hands out one that may not work.
    if (row.password_pending_enc)
      throw new UnavailableError('a rotation of this allocation is being completed; retry', 1);
    return {
      tenant_database_id: row.id,
      db_server_id: server.id,
      db_host: server.host,
      db_port: server.port,
      db_name: row.db_name,
      db_user: row.db_user,
      db_password: secrets.decrypt(row.password_enc),
    };
  }

  function provisioning(message: string, dbServerId?: string): Provisioning {
    return {
      status: 'provisioning',
      message,
      retry_after: config.retryAfterSeconds,
      ...(dbServerId ? { db_server_id: dbServerId } : {}),
    };
  }

  /** Waits while another request creates this instance's database; undefined when it failed. */
  async function waitUntilSettled(instanceId: string): Promise<TenantDatabase | undefined> {
    const deadline = Date.now() + DUPLICATE_WAIT_MS;
    for (let delay = 10; ; delay = Math.min(delay * 2, 250)) {
      const row = await tenants.findLiveByInstance(instanceId);
      if (row?.status !== 'creating' || Date.now() > deadline) return row;
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  /** The answer for an instance that already has a live allocation. */
  async function answerExisting(
    row: TenantDatabase,
    req: { customer_id: string },
  ): Promise<(Credentials & { status: 'allocated' }) | Provisioning | undefined> {
    if (row.customer_id !== req.customer_id) {
      throw new ConflictError('this instance_id is already allocated to another customer');
    }
    const settled = row.status === 'creating' ? await waitUntilSettled(row.instance_id!) : row;
    if (!settled) return undefined; // the other attempt failed: try afresh
    if (settled.status === 'creating') return provisioning('the database is still being created');
    if (settled.status === 'releasing') throw new ConflictError('this allocation is being released');
    const server = await servers.findById(settled.db_server_id);
    if (!server) throw new UnavailableError('the server of this allocation is missing from the catalog');
    return { status: 'allocated', ...credentials(server, settled) };
  }

  return { credentials, provisioning, answerExisting };
}

// The answers allocation gives, shared by shared and dedicated placement: credentials read from a
// row, the 202 body, and the answer for an instance that already has a live allocation.
import type {
  ServerAddress,
  ServersRepo,
  TenantDatabase,
  TenantDatabasesRepo,
  TlsRepo,
} from '@tenantdb/catalog';
import type { Allocated, Provisioning } from '@tenantdb/contracts';
import { ConflictError, UnavailableError } from '@tenantdb/http';
import type { SecretBox } from '@tenantdb/secrets';
import type { AllocationConfig } from './allocation.service';

/** How long a duplicate request waits for the one already creating the same database. */
const DUPLICATE_WAIT_MS = 15_000;
/** How long a server's TLS trust (its CA, or that it has none) is reused before it is read again. */
const TRUST_CACHE_MS = 60_000;
const TRUST_CACHE_MAX = 10_000;

export interface AnswersDeps {
  servers: Pick<ServersRepo, 'findById'>;
  tenants: Pick<TenantDatabasesRepo, 'findLiveByInstance'>;
  tls: Pick<TlsRepo, 'serverTrust'>;
  secrets: Pick<SecretBox, 'decrypt'>;
  config: Pick<AllocationConfig, 'retryAfterSeconds'>;
}

export type Answers = ReturnType<typeof createAnswers>;

type TlsFields = 'sslmode' | 'ssl_root_cert';
/**
 * What every answer with a password carries (allocate, provision-dedicated, rotate, the read);
 * sslmode and the CA only for a server with a fleet-CA certificate.
 */
export type Credentials = Required<Omit<Allocated, 'status' | TlsFields>> & Pick<Allocated, TlsFields>;

export function createAnswers(deps: AnswersDeps) {
  const { servers, tenants, tls, secrets, config } = deps;
  const trustCache = new Map<string, { at: number; caPem: string | null }>();

  /** The CA a client verifies this server with; null for a server without a certificate. */
  async function caOf(serverId: string): Promise<string | null> {
    const cached = trustCache.get(serverId);
    if (cached && Date.now() - cached.at < TRUST_CACHE_MS) return cached.caPem;
    const trust = await tls.serverTrust(serverId);
    if (trustCache.size >= TRUST_CACHE_MAX) trustCache.clear();
    trustCache.set(serverId, { at: Date.now(), caPem: trust?.ca_pem ?? null });
    return trust?.ca_pem ?? null;
  }

  async function credentials(server: ServerAddress, row: TenantDatabase): Promise<Credentials> {
    if (!server.host || !server.port)
      throw new UnavailableError('the server of this allocation has no address');
    // A rotation in flight, or one that crashed before settling: which password the role has is
    // not known until it settles (reconcile), and an answer never hands out one that may not work.
    if (row.password_pending_enc)
      throw new UnavailableError('a rotation of this allocation is being completed; retry', 1);
    const caPem = await caOf(server.id);
    return {
      ...(caPem ? { sslmode: 'verify-full' as const, ssl_root_cert: caPem } : {}),
      tenant_database_id: row.id,
      db_server_id: server.id,
      db_host: server.host,
      db_port: server.port,
      db_name: row.db_name,
      db_user: row.db_user,
      db_password: secrets.decrypt(row.password_enc, row.id),
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
    return { status: 'allocated', ...(await credentials(server, settled)) };
  }

  return { credentials, provisioning, answerExisting };
}

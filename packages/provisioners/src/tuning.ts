// Postgres settings sized from what a server is for: max_connections from its tenant slots and
// the plan's connection limit, memory settings from its memory limit. The container drivers pass
// them as `postgres -c name=value` arguments (swarm) or cluster parameters (kubernetes): the
// official image ignores tuning environment variables, which is how the old system kept
// max_connections at 100.
import { PermanentProvisionError, type ServerSpec } from './provisioner';

/** Connections kept for the platform itself: admin pools of the service and workers, health checks. */
export const ADMIN_CONNECTIONS = 20;
/** Used when a spec does not say how many connections a tenant may open. */
export const DEFAULT_TENANT_CONNECTIONS = 20;
/** Postgres' own default; a server is never sized below it. */
const MIN_MAX_CONNECTIONS = 100;

/**
 * Settings every driver owns (local, swarm, kubernetes): changing them would move the server away
 * from where it is looked for (its port, its addresses and sockets, its files).
 */
export const RESERVED_SETTINGS: ReadonlySet<string> = new Set([
  'port',
  'listen_addresses',
  'unix_socket_directories',
  'data_directory',
  'config_file',
  'hba_file',
  'ident_file',
  'external_pid_file',
  // TLS is the driver's: the certificate comes with the spec (ServerSpec.tls).
  'ssl',
  'ssl_cert_file',
  'ssl_key_file',
]);
const SETTING_RE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$/i;

/** What a server needs to be the source or target of tenant moves (logical replication). */
export interface ReplicationSpec {
  /** Moves one server takes part in at once (TENANTDB_MOVES_PER_SERVER). */
  moves: number;
  /** max_slot_wal_keep_size: WAL a stuck move's slot may hold before Postgres invalidates it. */
  walKeepSizeMb: number;
}
export const DEFAULT_REPLICATION: ReplicationSpec = { moves: 2, walKeepSizeMb: 4096 };
/** Slots one move holds on its source at most: the subscription's, and its tablesync workers' (2 by default). */
const SLOTS_PER_MOVE = 3;
/** Spare slots and senders for an operator (pg_basebackup, a replica). */
const SPARE_SLOTS = 4;

/**
 * Every server tenantdb creates can be a move's source and target: logical WAL, enough slots and
 * WAL senders for its moves (as source), enough replication workers for them (as target), and a
 * bound on the WAL a slot may hold, so a stuck move can never fill the disk (Postgres invalidates
 * the slot instead, and the move fails with that reason). Changing wal_level takes a restart.
 */
export function replicationSettings(spec: ReplicationSpec = DEFAULT_REPLICATION): Record<string, string> {
  const slots = spec.moves * SLOTS_PER_MOVE + SPARE_SLOTS;
  const workers = spec.moves * SLOTS_PER_MOVE + 2;
  return {
    wal_level: 'logical',
    max_replication_slots: String(slots),
    max_wal_senders: String(slots),
    max_logical_replication_workers: String(workers),
    max_worker_processes: String(workers + 8),
    max_slot_wal_keep_size: `${spec.walKeepSizeMb}MB`,
  };
}

/** Every tenant slot at its plan's connection limit, plus the platform's own connections. */
export function maxConnectionsFor(maxInstances: number, connectionLimit: number): number {
  return Math.max(MIN_MAX_CONNECTIONS, maxInstances * connectionLimit + ADMIN_CONNECTIONS);
}

/**
 * The settings a container server starts with. Memory settings follow the usual rules of thumb
 * (shared_buffers a quarter of the memory, effective_cache_size three quarters, work_mem what is
 * left split over every connection running a few sorts) and are only set when the server has a
 * memory limit; without one Postgres' defaults stay. Explicit `spec.settings` win over computed ones.
 */
export function tunedSettings(
  spec: Pick<ServerSpec, 'maxInstances' | 'connectionLimit' | 'memoryLimitMb' | 'settings' | 'replication'>,
): Record<string, string> {
  const maxConnections = maxConnectionsFor(
    spec.maxInstances,
    spec.connectionLimit ?? DEFAULT_TENANT_CONNECTIONS,
  );
  const tuned: Record<string, string> = { max_connections: String(maxConnections) };
  const memory = spec.memoryLimitMb;
  if (memory !== null && memory !== undefined && memory > 0) {
    const sharedBuffers = Math.max(16, Math.floor(memory / 4));
    tuned.shared_buffers = `${sharedBuffers}MB`;
    tuned.effective_cache_size = `${Math.max(32, Math.floor((memory * 3) / 4))}MB`;
    tuned.maintenance_work_mem = `${Math.min(2048, Math.max(16, Math.floor(memory / 16)))}MB`;
    tuned.work_mem = `${Math.max(64, Math.floor(((memory - sharedBuffers) * 1024) / (maxConnections * 3)))}kB`;
  }
  return { ...tuned, ...replicationSettings(spec.replication), ...spec.settings };
}

/** Refuses settings a container driver cannot pass safely or that it owns. */
export function validateSettings(settings: Record<string, string>): void {
  for (const [key, value] of Object.entries(settings)) {
    if (!SETTING_RE.test(key))
      throw new PermanentProvisionError(`invalid setting name ${JSON.stringify(key)}`);
    if (RESERVED_SETTINGS.has(key.toLowerCase()))
      throw new PermanentProvisionError(`setting ${key} is managed by the driver`);
    if (/[\r\n\0]/.test(value)) throw new PermanentProvisionError(`setting ${key} must be a single line`);
  }
}

/** `postgres -c name=value …`, one argument each: no shell ever parses them. */
export function postgresArgs(settings: Record<string, string>): string[] {
  return ['postgres', ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
}

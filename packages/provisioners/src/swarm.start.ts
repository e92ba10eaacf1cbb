// A new swarm server's way to running: the host-mode port it publishes (picked again when someone
// else holds it on the node), the wait for its first task, and why a service does not start.
import type Docker from 'dockerode';
import { PermanentProvisionError } from './provisioner';
import { findService, POLL_MS, sleep, tasksOf, updateService } from './swarm.docker';
import { hostPortOf, type PublishMode, withPublishedPort } from './swarm.objects';
import {
  conflictOnCurrentPort,
  demuxDockerLog,
  lastFatalLine,
  summarizeTasks,
  type TaskSummary,
  type TaskView,
} from './swarm.tasks';

const PORT_REPICKS = 3;

/**
 * A host port no other service publishes (ours or anyone's), at random so concurrent workers
 * rarely meet. The ports of `forService` itself (its spec's and what its endpoint still shows of
 * an earlier spec) are not taken: it is the one moving; `avoid` says what it must leave.
 */
export async function pickHostPort(
  docker: Docker,
  portRange: { from: number; to: number },
  avoid: Iterable<number>,
  forService?: string,
): Promise<number> {
  const taken = new Set<number>(avoid);
  for (const s of await docker.listServices()) {
    if (forService !== undefined && s.ID === forService) continue;
    for (const p of [...(s.Spec?.EndpointSpec?.Ports ?? []), ...(s.Endpoint?.Ports ?? [])]) {
      if (p.PublishedPort) taken.add(p.PublishedPort);
    }
  }
  const free: number[] = [];
  for (let p = portRange.from; p <= portRange.to; p++) if (!taken.has(p)) free.push(p);
  const port = free[Math.floor(Math.random() * free.length)];
  if (port === undefined) {
    throw new PermanentProvisionError(
      `no free host port in ${portRange.from}-${portRange.to} for another swarm server`,
    );
  }
  return port;
}

/** Why nothing runs, with the last FATAL line of the failed container when this engine has it. */
export async function explain(docker: Docker, summary: TaskSummary): Promise<string> {
  const reason = summary.reason ?? 'not running';
  const containerId = summary.failed?.containerId;
  if (!containerId) return reason;
  try {
    const raw = (await docker.getContainer(containerId).logs({
      stdout: true,
      stderr: true,
      tail: 50,
      follow: false,
    })) as unknown as Buffer;
    const fatal = lastFatalLine(demuxDockerLog(Buffer.from(raw)));
    return fatal ? `${reason}; last log error: ${fatal}` : reason;
  } catch {
    return reason; // the container ran on another node, or is gone already
  }
}

export interface StartWait {
  publishMode: PublishMode;
  /** How long to wait for the first task to run. */
  startTimeoutMs: number;
  crashLoopAfter: number;
  /** Another host port for the service, leaving `avoid` (see pickHostPort). */
  pickPort: (avoid: number[], forService: string) => Promise<number>;
}

/** Waits for a task to run (with its port); fails at once when it cannot start. */
export async function waitForStart(
  docker: Docker,
  service: Docker.Service,
  { publishMode, startTimeoutMs, crashLoopAfter, pickPort }: StartWait,
): Promise<TaskView> {
  const name = service.Spec?.Name ?? service.ID;
  const deadline = Date.now() + startTimeoutMs;
  let repicks = 0;
  for (;;) {
    const summary = summarizeTasks(await tasksOf(docker, service.ID), crashLoopAfter);
    const running = summary.running;
    if (running && (publishMode !== 'host' || running.publishedPort)) return running;
    if (summary.portConflict && publishMode === 'host' && repicks < PORT_REPICKS) {
      const current = (await findService(docker, service.ID)) ?? service;
      const held = hostPortOf(current.Spec);
      // Only a conflict on the port published now: an earlier port's failed task is still listed.
      if (
        held !== undefined &&
        conflictOnCurrentPort(summary, { port: held, specChangedAt: current.UpdatedAt })
      ) {
        repicks++;
        const port = await pickPort([held], service.ID);
        await updateService(docker, service, (spec) => withPublishedPort(spec, port));
        continue;
      }
    }
    if (summary.terminal) {
      throw new PermanentProvisionError(
        `swarm service ${name} cannot start: ${await explain(docker, summary)}`,
      );
    }
    if (Date.now() > deadline) {
      throw new Error(
        `swarm service ${name} did not start within ${startTimeoutMs} ms: ${await explain(docker, summary)}`,
      );
    }
    await sleep(POLL_MS);
  }
}

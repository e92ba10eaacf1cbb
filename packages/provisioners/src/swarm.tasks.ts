// How a swarm service's task list reads, as pure functions of what Docker reports: running,
// starting, or failed for good (and why), port conflicts, and the container log that says why.
import { POSTGRES_PORT } from './swarm.objects';

export interface TaskView {
  id: string;
  state: string;
  desiredState: string;
  error?: string;
  message?: string;
  exitCode?: number;
  createdAt: string;
  nodeId?: string;
  containerId?: string;
  /** Host-mode port the task published on its node. */
  publishedPort?: number;
}

interface RawTask {
  ID?: string;
  NodeID?: string;
  DesiredState?: string;
  CreatedAt?: string;
  Status?: {
    State?: string;
    Err?: string;
    Message?: string;
    ContainerStatus?: { ContainerID?: string; ExitCode?: number };
    PortStatus?: { Ports?: { TargetPort?: number; PublishedPort?: number; PublishMode?: string }[] };
  };
}

export function toTaskView(raw: unknown): TaskView {
  const t = raw as RawTask;
  const view: TaskView = {
    id: t.ID ?? '',
    state: t.Status?.State ?? 'unknown',
    desiredState: t.DesiredState ?? 'unknown',
    createdAt: t.CreatedAt ?? '',
  };
  if (t.Status?.Err) view.error = t.Status.Err;
  if (t.Status?.Message) view.message = t.Status.Message;
  if (t.NodeID) view.nodeId = t.NodeID;
  const container = t.Status?.ContainerStatus;
  if (container?.ContainerID) view.containerId = container.ContainerID;
  if (typeof container?.ExitCode === 'number' && container.ExitCode !== 0) view.exitCode = container.ExitCode;
  const port = t.Status?.PortStatus?.Ports?.find((p) => p.TargetPort === POSTGRES_PORT && p.PublishedPort);
  if (port?.PublishedPort) view.publishedPort = port.PublishedPort;
  return view;
}

export interface TaskSummary {
  /** The task serving the server, if one runs. */
  running?: TaskView;
  /** The newest task (what is happening now when nothing runs). */
  latest?: TaskView;
  /** The task the reason is about (the newest that failed, unless the newest says more). */
  failed?: TaskView;
  /** Why nothing runs, in the orchestrator's words. */
  reason?: string;
  /** Will not start without a change (see ObjectState.terminal). */
  terminal: boolean;
  /** The host-mode port is held by someone else on the node: another port would help. */
  portConflict: boolean;
  /**
   * The port that conflict is on, when the orchestrator says (its message, or the task's port):
   * a task of an earlier spec stays in the list after the port is changed.
   */
  conflictPort?: number;
}

const FAILED_STATES = new Set(['failed', 'rejected']);
/** A server should run until removed: a task that completed (exit 0) has stopped too. */
const EXITED_STATES = new Set(['failed', 'rejected', 'complete']);
const STARTING_STATES = new Set(['new', 'pending', 'assigned', 'accepted', 'preparing', 'ready', 'starting']);
/** Pull failures that another attempt will not fix (a registry being down is not among them). */
const IMAGE_ERROR =
  /no such image|manifest unknown|manifest for .* not found|pull access denied|repository does not exist|invalid reference format/i;
const PORT_CONFLICT = /address already in use|port is already allocated|host-mode port already in use/i;

/**
 * Reads a service's tasks (newest first after sorting). Terminal: the newest task was rejected
 * because its image cannot be had, or the last `crashLoopAfter` tasks all failed.
 */
export function summarizeTasks(tasks: TaskView[], crashLoopAfter: number): TaskSummary {
  const sorted = [...tasks].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  const running = sorted.find((t) => t.state === 'running' && t.desiredState === 'running');
  const latest = sorted[0];
  if (running) return { running, latest, terminal: false, portConflict: false };
  if (!latest) return { reason: 'no task scheduled yet', terminal: false, portConflict: false };

  // Count the exits since the last task that ran fine; the replacement being started now (if
  // any) is skipped over, it has not had its chance yet.
  let failedInARow = 0;
  for (const t of sorted) {
    if (EXITED_STATES.has(t.state)) failedInARow++;
    else if (failedInARow > 0 || !STARTING_STATES.has(t.state)) break;
  }
  const newestFailure = sorted.find((t) => EXITED_STATES.has(t.state));
  // A new task still starting says little; the failure before it says why it is starting again.
  const told = latest.error || !newestFailure ? latest : newestFailure;
  const what = told.error ?? told.message ?? told.state;
  let reason = `task ${told.state}${told.exitCode === undefined ? '' : ` (exit code ${told.exitCode})`}: ${what}`;
  if (failedInARow > 1) reason = `${failedInARow} tasks failed in a row; last: ${reason}`;

  const imageMissing = FAILED_STATES.has(told.state) && IMAGE_ERROR.test(told.error ?? '');
  const portConflict = PORT_CONFLICT.test(told.error ?? '');
  const summary: TaskSummary = {
    latest,
    failed: told,
    reason,
    terminal: imageMissing || failedInARow >= crashLoopAfter,
    portConflict,
  };
  const conflictPort = portConflict ? (portInMessage(told.error ?? '') ?? told.publishedPort) : undefined;
  if (conflictPort !== undefined) summary.conflictPort = conflictPort;
  return summary;
}

/** "listen tcp4 0.0.0.0:26500: bind: …", "Bind for 0.0.0.0:26500 failed: …", "[::]:26500". */
const ADDRESS_WITH_PORT = /(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:]*\]):(\d{1,5})\b/i;

function portInMessage(message: string): number | undefined {
  const port = Number(ADDRESS_WITH_PORT.exec(message)?.[1]);
  return Number.isInteger(port) && port > 0 && port <= 65_535 ? port : undefined;
}

/**
 * Whether a summary's port conflict is about the port the service publishes now, so that another
 * port would help. The failed task of an earlier spec stays in the task list after the port is
 * changed; its conflict was on the old port. When the orchestrator names no port (the scheduler's
 * "host-mode port already in use on 1 node"), a task created before the spec last changed is
 * taken for an earlier spec's.
 */
export function conflictOnCurrentPort(
  summary: TaskSummary,
  current: { port: number | undefined; specChangedAt?: string | undefined },
): boolean {
  if (!summary.portConflict || current.port === undefined) return false;
  if (summary.conflictPort !== undefined) return summary.conflictPort === current.port;
  const failedAt = Date.parse(summary.failed?.createdAt ?? '');
  const changedAt = Date.parse(current.specChangedAt ?? '');
  return Number.isNaN(failedAt) || Number.isNaN(changedAt) || failedAt >= changedAt;
}

/** Docker's multiplexed log stream (8-byte frame headers) as text. */
export function demuxDockerLog(buf: Buffer): string {
  const out: Buffer[] = [];
  let i = 0;
  while (i + 8 <= buf.length) {
    const type = buf[i];
    const size = buf.readUInt32BE(i + 4);
    if ((type !== 1 && type !== 2) || buf[i + 1] !== 0 || buf[i + 2] !== 0 || buf[i + 3] !== 0) {
      return buf.toString('utf8'); // not multiplexed (a TTY container)
    }
    out.push(buf.subarray(i + 8, i + 8 + size));
    i += 8 + size;
  }
  return Buffer.concat(out).toString('utf8');
}

/** The last FATAL/PANIC line of a Postgres log: why a server exited, without anything else it logged. */
export function lastFatalLine(log: string): string | undefined {
  const line = log
    .split('\n')
    .reverse()
    .find((l) => /\b(FATAL|PANIC):/.test(l));
  // From the severity on: the timestamp and pid prefix say nothing here.
  return line?.slice(line.search(/\b(FATAL|PANIC):/)).trim();
}

// The swarm driver's Docker plumbing: a client for an endpoint, the reads and the versioned
// update the rest of the driver builds on, the volume removal that waits for a container to let
// go, and how Docker's errors read.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { PermanentProvisionError } from './provisioner';
import { type TaskView, toTaskView } from './swarm.tasks';

export interface DockerEndpoint {
  /** unix:///var/run/docker.sock, tcp://manager:2376 (TLS when tlsDir is set). */
  url: string;
  /** Directory with ca.pem, cert.pem and key.pem (as DOCKER_CERT_PATH). */
  tlsDir?: string;
}

export const POLL_MS = 500;
const VOLUME_RELEASE_MS = 60_000;

export function dockerClient(endpoint: DockerEndpoint): Docker {
  const url = new URL(endpoint.url);
  if (url.protocol === 'unix:') return new Docker({ socketPath: url.pathname });
  if (url.protocol !== 'tcp:' && url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Error(`unsupported Docker endpoint ${endpoint.url}: use unix:// or tcp://`);
  const tls = endpoint.tlsDir
    ? {
        ca: readFileSync(join(endpoint.tlsDir, 'ca.pem')),
        cert: readFileSync(join(endpoint.tlsDir, 'cert.pem')),
        key: readFileSync(join(endpoint.tlsDir, 'key.pem')),
      }
    : {};
  const secure = url.protocol === 'https:' || Boolean(endpoint.tlsDir);
  return new Docker({
    host: url.hostname,
    port: Number(url.port || (secure ? 2376 : 2375)),
    protocol: secure ? 'https' : 'http',
    ...tls,
  });
}

export async function findService(docker: Docker, name: string): Promise<Docker.Service | undefined> {
  try {
    return (await docker.getService(name).inspect()) as Docker.Service;
  } catch (err) {
    if (statusOf(err) === 404) return undefined;
    throw err;
  }
}

export async function findSecret(docker: Docker, name: string): Promise<Docker.Secret | undefined> {
  // The name filter matches prefixes too: compare exactly.
  const secrets = await docker.listSecrets({ filters: { name: [name] } });
  return secrets.find((s) => s.Spec?.Name === name);
}

export async function tasksOf(docker: Docker, serviceId: string): Promise<TaskView[]> {
  const tasks = await docker.listTasks({ filters: { service: [serviceId] } });
  return tasks.map(toTaskView);
}

export async function updateService(
  docker: Docker,
  service: Docker.Service,
  change: (spec: Docker.ServiceSpec) => Docker.ServiceSpec,
): Promise<void> {
  // Updates carry the version they were made from; one that lost a race is made again.
  for (let attempt = 0; ; attempt++) {
    const current = (await findService(docker, service.ID)) ?? service;
    try {
      await docker.getService(service.ID).update({
        _query: { version: current.Version?.Index },
        _body: change(current.Spec ?? {}),
      } as unknown as Docker.ServiceSpec);
      return;
    } catch (err) {
      if (attempt >= 2 || !/update out of sequence/i.test(messageOf(err))) throw err;
    }
  }
}

export async function nodeAddress(docker: Docker, nodeId: string | undefined): Promise<string> {
  if (!nodeId) throw new Error('the task has no node yet');
  const node = (await docker.getNode(nodeId).inspect()) as { Status?: { Addr?: string } };
  const addr = node.Status?.Addr;
  if (!addr || addr === '0.0.0.0') throw new Error(`node ${nodeId} reports no address`);
  return addr;
}

export async function removeVolume(docker: Docker, name: string): Promise<void> {
  // The volume is in use until the removed service's container is gone, which takes a moment.
  const deadline = Date.now() + VOLUME_RELEASE_MS;
  for (;;) {
    try {
      await docker.getVolume(name).remove();
      return;
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) return;
      if (status !== 409 || Date.now() > deadline) throw dockerError(err, `removing volume ${name}`);
    }
    await sleep(POLL_MS);
  }
}

export function statusOf(err: unknown): number | undefined {
  const code = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

function messageOf(err: unknown): string {
  const json = (err as { json?: { message?: unknown } } | null)?.json;
  if (json && typeof json.message === 'string') return json.message;
  return err instanceof Error ? err.message : String(err);
}

/** Docker's own message; a 400 (invalid spec, bad image reference) is not worth retrying. */
export function dockerError(err: unknown, what: string): Error {
  const message = `${what}: ${messageOf(err)}`;
  return statusOf(err) === 400 ? new PermanentProvisionError(message) : new Error(message);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Is there a swarm to run the swarm suite against? `.ci/swarm-sandbox.sh up` makes one (single
// node, an offline Postgres image). Asked over the Docker API socket directly, so the check needs
// no client library.
import { request } from 'node:http';

export const SANDBOX_IMAGE = '127.0.0.1:5999/tenantdb/postgres:15';
export const DOCKER_SOCKET = '/var/run/docker.sock';

function dockerGet(socketPath: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', timeout: 5_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
    req.on('error', reject);
    req.end();
  });
}

/** Why the swarm suite cannot run here, or undefined when it can. */
export async function swarmUnavailable(
  image = SANDBOX_IMAGE,
  socketPath = DOCKER_SOCKET,
): Promise<string | undefined> {
  let info: { Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean } };
  try {
    const res = await dockerGet(socketPath, '/info');
    if (res.status !== 200) return `the Docker API at ${socketPath} answered ${res.status}`;
    info = JSON.parse(res.body);
  } catch (err) {
    return `no Docker engine at ${socketPath} (${(err as Error).message})`;
  }
  if (info.Swarm?.LocalNodeState !== 'active') return 'Docker runs but this node is not in a swarm';
  if (!info.Swarm.ControlAvailable) return 'this node is not a swarm manager';
  const img = await dockerGet(socketPath, `/images/${encodeURIComponent(image)}/json`).catch(() => undefined);
  if (img?.status !== 200) return `the test image ${image} is not built`;
  return undefined;
}

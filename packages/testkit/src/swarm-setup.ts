// Global setup of `pnpm test:swarm`: decides once whether the swarm suite runs. Without a swarm
// the suite is skipped and says so plainly — except in CI (CI=true), where a missing swarm fails
// the run: there the sandbox is started first, so its absence is a broken pipeline, not a choice.
import type { TestProject } from 'vitest/node';
import { DOCKER_SOCKET, SANDBOX_IMAGE, swarmUnavailable } from './swarm';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Empty when the swarm suite runs; otherwise why it is skipped. */
    swarmSkipReason: string;
    /** CI=true: a missing swarm fails the suite instead of skipping it. */
    swarmRequired: boolean;
    swarmImage: string;
    dockerUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const image = process.env.TENANTDB_TEST_IMAGE || SANDBOX_IMAGE;
  // DOCKER_HOST=unix:///… points at another engine (rootless Docker); tcp:// is not supported here.
  const dockerHost = process.env.DOCKER_HOST ?? '';
  const socket = dockerHost.startsWith('unix://') ? dockerHost.slice('unix://'.length) : DOCKER_SOCKET;
  const reason =
    dockerHost && !dockerHost.startsWith('unix://')
      ? `DOCKER_HOST=${dockerHost} is not a unix socket; the swarm suite talks to a local engine`
      : await swarmUnavailable(image, socket);
  const required = /^(1|true|yes)$/i.test(process.env.CI ?? '');
  if (reason) {
    const line = '-'.repeat(100);
    process.stdout.write(
      required
        ? `\n${line}\nSWARM SUITE CANNOT RUN, AND CI=true FORBIDS SKIPPING IT: ${reason}.\n.ci/run starts the sandbox (.ci/swarm-sandbox.sh up) before it; see its output.\n${line}\n\n`
        : `\n${line}\nSWARM SUITE SKIPPED: ${reason}.\nStart the sandbox with \`bash .ci/swarm-sandbox.sh up\` (root or sudo) and run \`pnpm test:swarm\` again.\n${line}\n\n`,
    );
  }
  // Failing here would not fail the run (vitest exits 0 on a global-setup error): each suite
  // fails a test of its own instead when the swarm is required and missing.
  project.provide('swarmRequired', required);
  project.provide('swarmSkipReason', reason ?? '');
  project.provide('swarmImage', image);
  project.provide('dockerUrl', `unix://${socket}`);
}

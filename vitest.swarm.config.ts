// `pnpm test:swarm`: the swarm provisioner end to end against a real Docker Swarm
// (`.ci/swarm-sandbox.sh up`). Skipped with a message when there is none, except under CI=true.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/**/*.swarm.test.ts', 'services/**/*.swarm.test.ts', 'compose/**/*.swarm.test.ts'],
    exclude: ['**/node_modules/**'],
    globalSetup: ['packages/testkit/src/swarm-setup.ts', 'packages/testkit/src/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // One file at a time: every file drives the same single-node swarm.
    fileParallelism: false,
  },
});

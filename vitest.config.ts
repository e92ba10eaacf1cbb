import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/**/*.test.ts', 'services/**/*.test.ts', 'loadtests/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/*.swarm.test.ts'],
    globalSetup: ['packages/testkit/src/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Test files start real Postgres servers; two cores do not gain from more parallel files.
    maxWorkers: 3,
  },
});

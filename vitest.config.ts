import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    exclude: ['**/node_modules/**', '**/*.swarm.test.ts', '**/*.fault.test.ts'],
    globalSetup: ['packages/testkit/src/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Test files start real Postgres servers; two cores do not gain from more parallel files.
    maxWorkers: 3,
    projects: [
      {
        extends: true,
        test: {
          name: 'integration',
          include: [
            'packages/**/*.test.ts',
            'services/**/*.test.ts',
            'loadtests/**/*.test.ts',
            'k8s/**/*.test.ts',
            'compose/**/*.test.ts',
            'docs/**/*.test.ts',
          ],
          exclude: ['**/node_modules/**', '**/*.swarm.test.ts', '**/*.e2e.test.ts', '**/*.fault.test.ts'],
        },
      },
      {
        // End-to-end files start the whole stack as processes (`pnpm dev`'s wiring): one at a
        // time, after the other files, so they neither starve nor are starved by them.
        extends: true,
        test: {
          name: 'e2e',
          include: ['services/**/*.e2e.test.ts', 'k8s/**/*.e2e.test.ts', 'docs/**/*.e2e.test.ts'],
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});

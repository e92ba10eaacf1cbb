// `pnpm test:faults`: issue 7's fault-injection suite (loadtests/faults). Each file starts the whole
// stack as processes and breaks parts of it under load; the reporter writes docs/reliability.md.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['loadtests/faults/**/*.fault.test.ts'],
    exclude: ['**/node_modules/**'],
    globalSetup: ['packages/testkit/src/global-setup.ts', 'loadtests/faults/global-setup.ts'],
    reporters: ['default', './loadtests/faults/report.ts'],
    testTimeout: 240_000,
    hookTimeout: 300_000,
    // One stack at a time: each file runs a whole stack and a load on a 2-core machine.
    fileParallelism: false,
  },
});

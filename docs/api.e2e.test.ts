// Every `sh` block of docs/api.md, in order, as one bash script against the stack `pnpm dev`
// starts (real processes, local driver): the guide's commands work as written. `curl -f` makes any
// HTTP error fail the script. Needs curl and jq (skipped with a message without them).
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type E2EStack, startE2EStack } from '../services/instance-service/test/e2e-stack';

const run = promisify(execFile);
const missing = (
  await Promise.all(
    ['curl', 'jq'].map((tool) =>
      run(tool, ['--version']).then(
        () => '',
        () => tool,
      ),
    ),
  )
).filter(Boolean);
if (missing.length) console.warn(`SKIPPED docs/api.md test: ${missing.join(', ')} not installed`);

/** The `sh` blocks of a markdown file, in order. */
export function shellBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

describe.skipIf(missing.length > 0)('docs/api.md', () => {
  let e2e: E2EStack;
  beforeAll(async () => {
    e2e = await startE2EStack();
  });
  afterAll(async () => {
    await e2e?.close();
  });

  it('runs every sh block against a running stack', async () => {
    const blocks = shellBlocks(await readFile(new URL('./api.md', import.meta.url), 'utf8'));
    expect(blocks.length).toBeGreaterThanOrEqual(15);
    const script = [
      'set -euo pipefail',
      ...blocks.map((b, i) => `echo "--- block ${i + 1}" >&2\n${b}`),
      'echo "--- all blocks ran" >&2',
    ].join('\n');
    const { stack } = e2e;
    const result = await run('bash', ['-c', script], {
      timeout: 240_000,
      env: {
        PATH: process.env.PATH,
        API: stack.urls.databaseService,
        PORTAL_API: stack.urls.instanceService,
        ADMIN: stack.secrets.adminToken,
        ALLOCATE: stack.secrets.allocateToken,
        PORTAL: stack.secrets.portalToken,
      },
    }).catch((err: { stderr?: string; stdout?: string; message: string }) => {
      throw new Error(`${err.message}\n${err.stderr ?? ''}`);
    });
    expect(result.stderr).toContain('--- all blocks ran');
    // The script talked to the stack it was given: the instance it made is ready and deleted.
    expect(result.stdout).toContain('"status":"deleted"');
    expect(result.stdout).toContain('"status":"released"');
  }, 300_000);
});

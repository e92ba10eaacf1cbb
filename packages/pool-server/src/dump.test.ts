// dumpAndRestore's failures, with stand-in tools (shell scripts): a pg_restore that fails at once
// must not leave pg_dump blocked on the pipe between them (a move's dump path, and a backup, then
// waited forever), and the reason reported is the restore's.
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientTools } from './client-tools';
import { dumpAndRestore } from './dump';

let dir: string;
const tools = (dump: string, restore: string): ClientTools => ({
  dir,
  version: '15.0',
  major: 15,
  pg_dump: join(dir, dump),
  pg_restore: join(dir, restore),
  psql: join(dir, 'psql'),
});
const conn = { host: '127.0.0.1', port: 5432, user: 'u', password: 'p', dbname: 'd' };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tenantdb-dump-'));
  const script = async (name: string, body: string) => {
    await writeFile(join(dir, name), `#!/bin/sh\n${body}\n`);
    await chmod(join(dir, name), 0o755);
  };
  // Writes far more than a pipe holds, then succeeds: it blocks until someone reads.
  await script('endless_dump', 'head -c 50000000 /dev/zero');
  await script('small_dump', 'printf archive');
  await script('failing_restore', 'echo "pg_restore: error: connection refused" >&2; exit 1');
  await script('reading_restore', 'cat > /dev/null');
  await script('failing_dump', 'echo "pg_dump: error: no such database" >&2; exit 1');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('dumpAndRestore', () => {
  it('a restore that fails at once stops the dump and reports the restore’s reason', async () => {
    await expect(dumpAndRestore(tools('endless_dump', 'failing_restore'), conn, conn)).rejects.toThrow(
      /pg_restore exited 1: pg_restore: error: connection refused/,
    );
  });

  it('a dump that fails reports the dump’s reason', async () => {
    await expect(dumpAndRestore(tools('failing_dump', 'reading_restore'), conn, conn)).rejects.toThrow(
      /pg_dump exited 1: pg_dump: error: no such database/,
    );
  });

  it('both succeeding: the bytes piped', async () => {
    expect(await dumpAndRestore(tools('small_dump', 'reading_restore'), conn, conn)).toBe(7);
  });
});

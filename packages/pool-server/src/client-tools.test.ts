import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type ClientTools, chooseTools, findClientTools, parseToolVersion } from './client-tools';

const tools = (major: number, dir = `/opt/pg${major}/bin`): ClientTools => ({
  dir,
  version: `${major}.3`,
  major,
  pg_dump: `${dir}/pg_dump`,
  pg_restore: `${dir}/pg_restore`,
  psql: `${dir}/psql`,
});

const made: string[] = [];
afterAll(async () => {
  for (const dir of made) await rm(dir, { recursive: true, force: true });
});

describe('client tools', () => {
  it('reads the major from --version, old and new numbering', () => {
    expect(parseToolVersion('pg_dump (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n')).toEqual({
      version: '15.14',
      major: 15,
    });
    expect(parseToolVersion('pg_dump (PostgreSQL) 17.2')).toEqual({ version: '17.2', major: 17 });
    expect(parseToolVersion('pg_dump (PostgreSQL) 9.6.24')?.major).toBe(9.6);
    expect(parseToolVersion('something else')).toBeUndefined();
  });

  it('picks the oldest major at least the server’s, and says why when none fits', () => {
    const found = [tools(17), tools(15)];
    expect(chooseTools(found, 15)).toMatchObject({ kind: 'found', tools: { major: 15 } });
    expect(chooseTools(found, 16)).toMatchObject({ kind: 'found', tools: { major: 17 } });
    const none = chooseTools([tools(15, '/usr/lib/postgresql/15/bin')], 17);
    expect(none.kind).toBe('none');
    expect(none.kind === 'none' && none.reason).toMatch(
      /PostgreSQL 17 or newer \(found 15\.3 in \/usr\/lib\/postgresql\/15\/bin\).*TENANTDB_CLIENT_TOOL_DIRS/,
    );
    expect(chooseTools([], 15)).toMatchObject({ kind: 'none', reason: expect.stringMatching(/found none/) });
  });

  it("finds this machine's real tools by major, once each, and skips directories without all three", async () => {
    const partial = await mkdtemp(join(tmpdir(), 'tenantdb-tools-'));
    made.push(partial);
    // Only pg_dump here: not a usable set, so not listed.
    await writeFile(join(partial, 'pg_dump'), '#!/bin/sh\necho "pg_dump (PostgreSQL) 99.1"\n');
    await chmod(join(partial, 'pg_dump'), 0o755);
    const found = await findClientTools({ dirs: [partial, '/nonexistent/dir'] });
    expect(found.some((t) => t.dir === partial)).toBe(false);
    // The machine has Debian's PostgreSQL 15 client tools (docs: environment).
    const fifteen = found.find((t) => t.major === 15);
    expect(fifteen).toBeDefined();
    expect(new Set(found.map((t) => t.major)).size).toBe(found.length);
    expect(chooseTools(found, 15)).toMatchObject({ kind: 'found', tools: { major: 15 } });
  });
});

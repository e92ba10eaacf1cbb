// pg_dump to a stream and pg_restore from one, for backups and restores: the archive flows
// through the caller (digest, encryption, the store) and never lands on the worker's disk. As in
// dump.ts, the password goes in PGPASSWORD and errors carry only the tool's exit code and the last
// lines it printed.
import { spawn } from 'node:child_process';
import { type Readable, Transform } from 'node:stream';
import type { ClientTools } from './client-tools';
import { type DumpConnection, DumpError } from './dump';

const connArgs = (c: DumpConnection) => ['-h', c.host, '-p', String(c.port), '-U', c.user, '-d', c.dbname];
const envFor = (c: DumpConnection, app: string) => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  PGPASSWORD: c.password,
  PGSSLMODE: 'prefer',
  PGCONNECT_TIMEOUT: '10',
  PGAPPNAME: app,
});
const tail = (text: string) => text.trim().split('\n').slice(-3).join(' / ').slice(0, 400);

/**
 * `pg_dump -Fc` of `source` as a stream. The stream ends only when pg_dump exited 0; any other
 * exit, or a kill, makes it error instead, so whatever consumes it (a store's upload) never takes
 * a cut archive for a whole one. `snapshot`: a snapshot exported by a transaction the caller keeps
 * open, so the dump shows the same data as what the caller read there.
 */
export function dumpToStream(
  tools: ClientTools,
  source: DumpConnection,
  opts: { snapshot?: string } = {},
): { stream: Readable; kill(): void } {
  const child = spawn(
    tools.pg_dump,
    [
      ...connArgs(source),
      '-Fc',
      '--no-publications',
      '--no-subscriptions',
      ...(opts.snapshot ? [`--snapshot=${opts.snapshot}`] : []),
    ],
    { env: envFor(source, 'tenantdb-backup'), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = `${stderr}${d.toString()}`.slice(-4000);
  });
  const exit = new Promise<string | undefined>((resolve) => {
    child.on('error', (err) => resolve(`pg_dump: ${err.message}`));
    child.on('close', (code, signal) =>
      resolve(code === 0 ? undefined : `pg_dump exited ${code ?? signal}: ${tail(stderr)}`),
    );
  });
  const guard = new Transform({
    transform(chunk, _enc, done) {
      done(null, chunk);
    },
    flush(done) {
      void exit.then((failure) => done(failure ? new DumpError(failure) : null));
    },
  });
  child.stdout.pipe(guard);
  guard.on('close', () => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return { stream: guard, kill: () => child.kill('SIGKILL') };
}

/**
 * `pg_restore` of an archive arriving on `input` into `target`. Objects are created as `role`
 * (SET ROLE; the tenant's owner role; none: the admin) with the archive's owners ignored; `noAcl` also leaves out
 * its grants (a copy for another tenant must not grant to the source's roles). Rejects when the
 * input errors (pg_restore is killed) or pg_restore fails.
 */
export function restoreFromStream(
  tools: ClientTools,
  target: DumpConnection,
  input: Readable,
  opts: { role?: string; noAcl: boolean },
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      tools.pg_restore,
      [
        ...connArgs(target),
        '--exit-on-error',
        '--no-owner',
        ...(opts.role ? [`--role=${opts.role}`] : []),
        ...(opts.noAcl ? ['--no-acl'] : []),
      ],
      { env: envFor(target, 'tenantdb-restore'), stdio: ['pipe', 'ignore', 'pipe'] },
    );
    let stderr = '';
    let inputError: Error | undefined;
    child.stderr.on('data', (d: Buffer) => {
      stderr = `${stderr}${d.toString()}`.slice(-4000);
    });
    child.stdin.on('error', () => {}); // a restore that died first is reported by its exit
    input.on('error', (err) => {
      inputError = err;
      child.kill('SIGKILL');
    });
    input.pipe(child.stdin);
    child.on('error', (err) => reject(new DumpError(`pg_restore: ${err.message}`)));
    child.on('close', (code) => {
      if (inputError) reject(inputError);
      else if (code === 0) resolve();
      else reject(new DumpError(`pg_restore exited ${code}: ${tail(stderr)}`));
    });
  });
}

/** Entries of the table of contents of an archive arriving on `input` (pg_restore -l). */
export function countArchiveEntries(tools: ClientTools, input: Readable): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(tools.pg_restore, ['-l'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr = `${stderr}${d.toString()}`.slice(-4000);
    });
    let inputError: Error | undefined;
    child.stdin.on('error', () => {}); // it stops reading once it has the table of contents
    input.on('error', (err) => {
      inputError = err;
      child.kill('SIGKILL');
    });
    input.pipe(child.stdin);
    child.on('error', (err) => reject(new DumpError(`pg_restore -l: ${err.message}`)));
    child.on('close', (code) => {
      input.destroy();
      if (inputError) return reject(inputError);
      if (code !== 0) return reject(new DumpError(`pg_restore -l exited ${code}: ${tail(stderr)}`));
      resolve(stdout.split('\n').filter((l) => l.trim() && !l.startsWith(';')).length);
    });
  });
}

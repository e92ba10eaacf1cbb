// pg_dump and pg_restore for moves, run with the tools chosen by major (client-tools.ts). The
// admin password goes to the child in PGPASSWORD, never on its command line (which any local user
// can read) nor in an error: failures carry the tool's exit code and the last lines it printed.
import { spawn } from 'node:child_process';
import type { ClientTools } from './client-tools';

export interface DumpConnection {
  host: string;
  port: number;
  user: string;
  password: string;
  dbname: string;
}

export class DumpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DumpError';
  }
}

const connArgs = (c: DumpConnection) => ['-h', c.host, '-p', String(c.port), '-U', c.user, '-d', c.dbname];
const envFor = (c: DumpConnection) => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  PGPASSWORD: c.password,
  PGSSLMODE: 'prefer',
  PGCONNECT_TIMEOUT: '10',
  PGAPPNAME: 'tenantdb-move',
});

interface Ran {
  stdout: string;
}

function tail(text: string): string {
  return text.trim().split('\n').slice(-3).join(' / ').slice(0, 400);
}

function runTool(file: string, args: string[], env: NodeJS.ProcessEnv, what: string): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr = `${stderr}${d.toString()}`.slice(-4000);
    });
    child.on('error', (err) => reject(new DumpError(`${what}: ${err.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve({ stdout });
      else reject(new DumpError(`${what} exited ${code}: ${tail(stderr)}`));
    });
  });
}

const DUMP_FLAGS = ['--no-publications', '--no-subscriptions'];

/** The source database's schema only, as a custom-format archive in `file`. */
export async function dumpSchema(tools: ClientTools, source: DumpConnection, file: string): Promise<void> {
  await runTool(
    tools.pg_dump,
    [...connArgs(source), '-Fc', '--schema-only', ...DUMP_FLAGS, '-f', file],
    envFor(source),
    'pg_dump --schema-only',
  );
}

/** The archive's table of contents (pg_restore -l). */
export async function listArchive(tools: ClientTools, file: string): Promise<string> {
  return (await runTool(tools.pg_restore, ['-l', file], envFor({} as DumpConnection), 'pg_restore -l'))
    .stdout;
}

/** Restores part of an archive: one section, and/or the entries of a list file (pg_restore -L). */
export async function restoreArchive(
  tools: ClientTools,
  target: DumpConnection,
  file: string,
  part: { section?: 'pre-data' | 'data' | 'post-data'; listFile?: string; singleTransaction?: boolean },
): Promise<void> {
  await runTool(
    tools.pg_restore,
    [
      ...connArgs(target),
      '--exit-on-error',
      ...(part.singleTransaction ? ['--single-transaction'] : []),
      ...(part.section ? [`--section=${part.section}`] : []),
      ...(part.listFile ? ['-L', part.listFile] : []),
      file,
    ],
    envFor(target),
    `pg_restore${part.section ? ` --section=${part.section}` : ''}`,
  );
}

/** `pg_dump -Fc source | pg_restore -d target`: the whole database, streamed. Returns bytes piped. */
export function dumpAndRestore(
  tools: ClientTools,
  source: DumpConnection,
  target: DumpConnection,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const dump = spawn(tools.pg_dump, [...connArgs(source), '-Fc', ...DUMP_FLAGS], {
      env: envFor(source),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const restore = spawn(tools.pg_restore, [...connArgs(target), '--exit-on-error'], {
      env: envFor(target),
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let bytes = 0;
    let dumpErr = '';
    let restoreErr = '';
    dump.stdout.on('data', (d: Buffer) => {
      bytes += d.length;
    });
    dump.stdout.pipe(restore.stdin);
    restore.stdin.on('error', () => {}); // a restore that died first is reported by its exit
    dump.stderr.on('data', (d: Buffer) => {
      dumpErr = `${dumpErr}${d.toString()}`.slice(-4000);
    });
    restore.stderr.on('data', (d: Buffer) => {
      restoreErr = `${restoreErr}${d.toString()}`.slice(-4000);
    });
    const exits = [dump, restore].map(
      (child) =>
        new Promise<number>((done) => {
          child.on('error', () => done(-1));
          child.on('close', (code) => done(code ?? -1));
        }),
    );
    // A restore that fails first leaves pg_dump blocked on a pipe nobody reads: it is stopped, and
    // the restore's reason is the one reported.
    let restoreFailedFirst = false;
    void exits[1]!.then((code) => {
      if (code !== 0 && dump.exitCode === null && dump.signalCode === null) {
        restoreFailedFirst = true;
        dump.kill('SIGTERM');
      }
    });
    void Promise.all(exits).then(([dumpCode, restoreCode]) => {
      if (restoreFailedFirst) reject(new DumpError(`pg_restore exited ${restoreCode}: ${tail(restoreErr)}`));
      else if (dumpCode !== 0) reject(new DumpError(`pg_dump exited ${dumpCode}: ${tail(dumpErr)}`));
      else if (restoreCode !== 0)
        reject(new DumpError(`pg_restore exited ${restoreCode}: ${tail(restoreErr)}`));
      else resolve(bytes);
    });
  });
}

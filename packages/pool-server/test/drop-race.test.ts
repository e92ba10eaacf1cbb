// Releases of one tenant racing each other on a real pool server (a client's retry arriving while
// the first release still runs). Each drop has its own admin session, as separate workers would:
// without the drop lock in tenants.ts, Postgres failed the losers with XX000, "could not find tuple
// for role" from DROP ROLE or "tuple concurrently updated" from ALTER ROLE ... NOLOGIN.
import { randomBytes } from 'node:crypto';
import { createSecretBox, generatePassword } from '@tenantdb/secrets';
import { type RunningPostgres, startPostgres } from '@tenantdb/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createPoolConnections,
  createTenantOps,
  describePgError,
  generateTenantNames,
  type PoolConnections,
  type PoolServerTarget,
  type TenantNames,
} from '../src';

/** Drops of one tenant fired at once; one admin session each. */
const DROPS = 8;
/** Tenants created and dropped in turn: one round lost to lucky timing must not hide the race. */
const ROUNDS = 10;

let server: RunningPostgres;
let target: PoolServerTarget;
let connections: PoolConnections;
/** The test's own view of the server, outside the pool under test. */
let observer: pg.Client;

beforeAll(async () => {
  // fsync stays on, as on a real pool server: each drop's commit then waits for its WAL flush, long
  // enough for the other sessions to run into its half-done work. With fsync off the race showed
  // in about 30% of rounds on an idle machine and 4% on a busy one; with it on, in nearly all.
  server = await startPostgres({ password: generatePassword() });
  const secrets = createSecretBox([{ id: 'k1', key: randomBytes(32) }]);
  target = {
    id: 'pool-1',
    host: server.host,
    port: server.port,
    admin_user: server.user,
    admin_password_enc: secrets.encrypt(server.password, 'pool-1'),
    admin_database: 'postgres',
  };
  connections = createPoolConnections(secrets, { maxPerServer: DROPS });
  observer = new pg.Client({ connectionString: server.url() });
  await observer.connect();
});
afterAll(async () => {
  await observer?.end();
  await connections?.close();
  await server?.destroy();
});

/**
 * Logs in every admin session the pool may hold, all at once (each waits until all are in), so
 * the drops that follow start together on sessions already open rather than staggered by logins.
 */
async function openSessions(n: number): Promise<void> {
  let arrived = 0;
  let allIn!: () => void;
  const everyone = new Promise<void>((resolve) => {
    allIn = resolve;
  });
  const pids = await Promise.all(
    Array.from({ length: n }, () =>
      connections.withClient(target, async (client) => {
        if (++arrived === n) allIn();
        await everyone;
        return (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      }),
    ),
  );
  expect(new Set(pids).size).toBe(n);
}

async function leftOnServer(t: TenantNames) {
  const { rows } = await observer.query<{ role: boolean; database: boolean }>(
    `SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1) AS role,
            EXISTS (SELECT FROM pg_database WHERE datname = $2) AS database`,
    [t.dbUser, t.dbName],
  );
  return rows[0];
}

describe('concurrent drops of one tenant', () => {
  it(`all ${DROPS} succeed and leave neither role nor database, in each of ${ROUNDS} rounds`, async () => {
    const tenantOps = createTenantOps(connections);
    await openSessions(DROPS);

    for (let round = 1; round <= ROUNDS; round++) {
      const tenant = generateTenantNames();
      await tenantOps.create(target, { ...tenant, password: generatePassword(), connectionLimit: 5 });
      expect(await leftOnServer(tenant)).toEqual({ role: true, database: true });

      const outcomes = await Promise.allSettled(
        Array.from({ length: DROPS }, () => tenantOps.drop(target, tenant)),
      );

      const failures = outcomes.flatMap((o) => (o.status === 'rejected' ? [describePgError(o.reason)] : []));
      expect(failures, `round ${round}`).toEqual([]);
      expect(await leftOnServer(tenant), `round ${round}`).toEqual({ role: false, database: false });
    }
  });
});

// Advisory locks on a pool server, taken on the admin connection that does the guarded work.
// Session locks, not transaction ones: the statements they guard (DROP DATABASE) cannot run in a
// transaction. The catalog's own locks live in @tenantdb/catalog (locks.ts).
import type pg from 'pg';

/** Runs `fn` holding a session advisory lock on `client`, waiting for it if another holds it. */
export async function withServerLock<T>(
  client: pg.ClientBase,
  key: string,
  fn: () => Promise<T>,
): Promise<T> {
  await client.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
  try {
    return await fn();
  } finally {
    await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]);
  }
}

/** The drop of one tenant (database and role): two releases of it must not run side by side. */
export const dropLockKey = (dbUser: string) => `tenantdb:drop:${dbUser}`;

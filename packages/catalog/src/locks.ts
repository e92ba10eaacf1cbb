// Advisory locks on the catalog Postgres: the one place that names how they are taken. Keys are
// strings hashed by Postgres (hashtext), so a lock's name says what it guards.
import { sql } from 'kysely';
import type { CatalogDb, CatalogTrx } from './db';

/** What `trySessionLock` gives back: the work's value, or that another session holds the lock. */
export type LockAttempt<T> = { acquired: true; value: T } | { acquired: false };

/**
 * Runs `fn` holding a session-level advisory lock, waiting for it if another session holds it.
 * The lock lives on one catalog connection for as long as `fn` runs (`fn` gets that connection),
 * not in a transaction, so it can span several statements and commits; it goes with the
 * connection if the process dies.
 */
export async function withSessionLock<T>(
  db: CatalogDb,
  key: string,
  fn: (conn: CatalogDb) => Promise<T>,
): Promise<T> {
  return db.connection().execute(async (conn) => {
    await sql`SELECT pg_advisory_lock(hashtext(${key}))`.execute(conn);
    try {
      return await fn(conn);
    } finally {
      await sql`SELECT pg_advisory_unlock(hashtext(${key}))`.execute(conn);
    }
  });
}

/** As withSessionLock, but never waits: `{ acquired: false }` when another session holds it. */
export async function trySessionLock<T>(
  db: CatalogDb,
  key: string,
  fn: (conn: CatalogDb) => Promise<T>,
): Promise<LockAttempt<T>> {
  return db.connection().execute(async (conn) => {
    const { rows } = await sql<{ locked: boolean }>`
      SELECT pg_try_advisory_lock(hashtext(${key})) AS locked`.execute(conn);
    if (!rows[0]?.locked) return { acquired: false };
    try {
      return { acquired: true, value: await fn(conn) };
    } finally {
      await sql`SELECT pg_advisory_unlock(hashtext(${key}))`.execute(conn);
    }
  });
}

/**
 * As withSessionLock, but waits at most `timeoutMs` for the lock (the session's lock_timeout, put
 * back before the connection returns to the pool): `{ acquired: false }` when it was not had by
 * then, and `fn` did not run.
 */
export async function waitSessionLock<T>(
  db: CatalogDb,
  key: string,
  timeoutMs: number,
  fn: (conn: CatalogDb) => Promise<T>,
): Promise<LockAttempt<T>> {
  return db.connection().execute(async (conn) => {
    try {
      await sql`SELECT set_config('lock_timeout', ${`${Math.max(1, Math.round(timeoutMs))}ms`}, false)`.execute(
        conn,
      );
      await sql`SELECT pg_advisory_lock(hashtext(${key}))`.execute(conn);
    } catch (err) {
      if ((err as { code?: string }).code === '55P03') return { acquired: false }; // lock_not_available
      throw err;
    } finally {
      await sql`SELECT set_config('lock_timeout', '0', false)`.execute(conn);
    }
    try {
      return { acquired: true, value: await fn(conn) };
    } finally {
      await sql`SELECT pg_advisory_unlock(hashtext(${key}))`.execute(conn);
    }
  });
}

/** Takes a transaction-level advisory lock, waiting for it; released at COMMIT or ROLLBACK. */
export async function takeTransactionLock(trx: CatalogTrx, key: string): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(hashtext(${key}))`.execute(trx);
}

/** The lock names in use, one place: who takes each is said beside it. */
export const LOCK_KEYS = {
  /** Every rotation of one allocation (try), and the start of its release (wait, bounded). */
  rotation: (tenantDatabaseId: string) => `rotate:${tenantDatabaseId}`,
  /** One warm refill per pool at a time, whichever replica or job runs it (try). */
  warmRefill: (serverId: string) => `refill-warm:${serverId}`,
  /** The capacity planner's decision (transaction lock). */
  capacityPlanner: 'tenantdb:grow-shared-capacity',
  /**
   * Every insert of a server tenantdb provisions (transaction lock; LimitsRepo.lockFleet): the
   * fleet ceiling and the provisioning bound are counted under it. Taken after the planner's or a
   * customer's lock, never before.
   */
  serverCreation: 'tenantdb:server-creation',
  /**
   * The moves one server takes part in, counted against TENANTDB_MOVES_PER_SERVER when a move
   * starts (transaction lock; both servers', in id order).
   */
  serverMoves: (serverId: string) => `server-moves:${serverId}`,
  /** The one worker advancing a move (session lock, try): a second delivery of its job leaves it. */
  move: (moveId: string) => `move:${moveId}`,
  /** One worker at a time runs a backup or a restore (try; the session goes with a dead worker). */
  backup: (backupId: string) => `backup:${backupId}`,
  restore: (restoreId: string) => `restore:${restoreId}`,
  /** One customer's new instances and dedicated servers, counted against its limits (transaction lock). */
  customerLimits: (customerId: string) => `customer-limits:${customerId}`,
} as const;

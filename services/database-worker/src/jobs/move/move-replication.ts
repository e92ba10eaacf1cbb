// The replication half of a move (logical path): publication, replication role and subscription,
// the copy's progress, the wait for catch-up at cut-over, sequences, and removing all of it.
import type { DbServer, TlsRepo } from '@tenantdb/catalog';
import { PermanentJobError } from '@tenantdb/jobs';
import {
  conninfo,
  createSubscriptionStatement,
  dropSubscriptionStatements,
  ownerRoleOf,
  type PoolConnections,
  quoteIdent,
  quoteLiteral,
  replicationRoleStatements,
  SEQUENCE_VALUES,
} from '@tenantdb/pool-server';
import { generatePassword, scramSha256Verifier } from '@tenantdb/secrets';
import type pg from 'pg';
import type { MoveParts } from './move-steps';

/** How the steps reach a server: a database of it as admin (own connection), or its admin pool. */
export interface ServerAccess {
  onDb<T>(server: DbServer, database: string, fn: (c: pg.Client) => Promise<T>): Promise<T>;
  run(server: DbServer, statements: string[]): Promise<void>;
  connections: PoolConnections;
  tls: Pick<TlsRepo, 'serverCertificate'>;
}

/**
 * 3D000 invalid_catalog_name: the database is not there (nothing of the move in it). A failed
 * connect arrives as PoolServerUnavailableError, with the code in its message.
 */
export const isMissingDatabase = (err: unknown) =>
  (err as { code?: string }).code === '3D000' || (err instanceof Error && err.message.includes('3D000:'));

export function createReplicationSteps(access: ServerAccess) {
  const { onDb, run, connections, tls } = access;
  return {
    /**
     * Publication on the source database, the replication role, and the subscription on the
     * target (copy_data: the initial copy, then streaming). A subscription that exists is kept.
     */
    async startReplication(p: MoveParts): Promise<void> {
      const exists = await onDb(p.target, p.names.dbName, async (c) => {
        const { rows } = await c.query('SELECT FROM pg_subscription WHERE subname = $1', [p.object]);
        return rows.length > 0;
      });
      if (exists) return;
      await onDb(p.source, p.names.dbName, async (c) => {
        const { rows } = await c.query('SELECT FROM pg_publication WHERE pubname = $1', [p.object]);
        if (rows.length === 0) await c.query(`CREATE PUBLICATION ${quoteIdent(p.object)} FOR ALL TABLES`);
      });
      const password = generatePassword();
      await run(
        p.source,
        replicationRoleStatements(p.object, ownerRoleOf(p.names), await scramSha256Verifier(password)),
      );
      const sslmode = (await tls.serverCertificate(p.source.id)) ? 'require' : 'prefer';
      const connection = conninfo({
        host: p.source.host!,
        port: p.source.port!,
        dbname: p.names.dbName,
        user: p.object,
        password,
        sslmode,
        // No client certificate: libpq would otherwise look in the server user's home, which it
        // may not be allowed to read (an error, where a missing file is fine).
        sslcert: '/nonexistent/tenantdb-move.crt',
        sslkey: '/nonexistent/tenantdb-move.key',
        application_name: p.object,
      });
      await onDb(p.target, p.names.dbName, async (c) => {
        // The statement carries the replication role's password: kept out of the server log.
        await c.query("SET log_min_error_statement = 'panic'");
        await c.query(createSubscriptionStatement(p.object, connection));
      });
    },

    /** Tables copied, bytes on both sides, and how far the subscription's slot is behind. */
    async syncState(p: MoveParts) {
      const [tables, targetBytes] = await onDb(p.target, p.names.dbName, async (c) => {
        const t = await c.query<{ total: number; ready: number }>(
          `SELECT count(*)::int AS total, count(*) FILTER (WHERE r.srsubstate = 'r')::int AS ready
             FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = $1`,
          [p.object],
        );
        const b = await c.query<{ n: string }>('SELECT pg_database_size(current_database())::text AS n');
        return [t.rows[0]!, Number(b.rows[0]!.n)] as const;
      });
      const source = await connections.withClient(p.source, async (c) => {
        const { rows } = await c.query<{ lag: string | null; bytes: string; present: boolean }>(
          `SELECT (SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text
                     FROM pg_replication_slots WHERE slot_name = $1) AS lag,
                  EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1 AND NOT (wal_status = 'lost')) AS present,
                  pg_database_size($2)::text AS bytes`,
          [p.object, p.names.dbName],
        );
        return rows[0]!;
      });
      return {
        tablesTotal: tables.total,
        tablesReady: tables.ready,
        bytesTotal: Number(source.bytes),
        bytesCopied: targetBytes,
        lagBytes: source.lag === null ? null : Number(source.lag),
        slotPresent: source.present,
      };
    },

    /**
     * After writes are blocked: waits until the subscription has applied and flushed everything
     * the source wrote (its slot's confirmed_flush_lsn reaches the source's current LSN); a tiny
     * WAL message every round wakes the WAL sender, so the target's answer comes at once.
     */
    async waitCaughtUp(p: MoveParts, timeoutMs: number): Promise<void> {
      await connections.withClient(p.source, async (c) => {
        const { rows } = await c.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
        const lsn = rows[0]!.lsn;
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const { rows: slot } = await c.query<{ done: boolean | null }>(
            'SELECT confirmed_flush_lsn >= $2::pg_lsn AS done FROM pg_replication_slots WHERE slot_name = $1',
            [p.object, lsn],
          );
          if (slot[0]?.done) return;
          if (!slot[0]) throw new PermanentJobError('the replication slot of the move is gone on the source');
          if (Date.now() > deadline)
            throw new Error(`the target did not catch up with ${lsn} within ${timeoutMs} ms`);
          await c.query("SELECT pg_logical_emit_message(false, 'tenantdb', 'move')");
          await new Promise((r) => setTimeout(r, 50));
        }
      });
    },

    /** Sequences are not replicated: their values are set on the target (after writes are blocked). */
    async copySequences(p: MoveParts): Promise<number> {
      const { rows } = await onDb(p.source, p.names.dbName, (c) =>
        c.query<{ name: string; value: string }>(SEQUENCE_VALUES),
      );
      if (rows.length === 0) return 0;
      await onDb(p.target, p.names.dbName, async (c) => {
        for (const r of rows)
          await c.query('SELECT setval($1::regclass, $2::bigint, true)', [r.name, r.value]);
      });
      return rows.length;
    },

    /** Subscription (target), publication, slots and replication role (source): all of the move's. */
    async dropReplication(p: MoveParts): Promise<void> {
      await onDb(p.target, p.names.dbName, async (c) => {
        for (const s of dropSubscriptionStatements(p.object)) await c.query(s);
      }).catch((err) => {
        if (!isMissingDatabase(err)) throw err;
      });
      await onDb(p.source, p.names.dbName, (c) =>
        c.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(p.object)}`),
      ).catch((err) => {
        if (!isMissingDatabase(err)) throw err;
      });
      await connections.withClient(p.source, async (c) => {
        await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [
          p.object,
        ]);
        // The subscription's slot and any tablesync slot left by a copy cut short: every logical
        // slot in the tenant's database is the move's (a tenant role cannot make slots).
        for (let i = 0; ; i++) {
          const { rows } = await c.query<{ left: number }>(
            `SELECT count(*) FILTER (WHERE active)::int AS left,
                    count(pg_drop_replication_slot(slot_name)) FILTER (WHERE NOT active) AS dropped
               FROM pg_replication_slots WHERE database = $1 AND slot_type = 'logical'`,
            [p.names.dbName],
          );
          if (rows[0]!.left === 0) break;
          if (i >= 50) throw new Error('a replication slot of the move is still in use');
          await new Promise((r) => setTimeout(r, 100));
        }
        await c.query(
          `DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = ${quoteLiteral(p.object)}) THEN DROP ROLE ${quoteIdent(p.object)}; END IF; END $$`,
        );
      });
    },
  };
}

// RAW-TX: the catalog half of an allocation with nothing around it — the same reserve UPDATE as
// ServersRepo.reserveSharedSlot plus the tenant_databases insert, sent with plain pg from as
// many clients as the API scenarios use. It is the ceiling the catalog-only API paths are held
// against. It runs on a database of its own so its rows never reach the service's catalog.
import { randomBytes, randomUUID } from 'node:crypto';
import { CATALOG_SCHEMA, createCatalogDb, migrateToLatest } from '@tenantdb/catalog';
import { generateTenantNames } from '@tenantdb/pool-server';
import { createSecretBox, generatePassword } from '@tenantdb/secrets';
import { adminQuery, withDatabase } from '@tenantdb/testkit';
import { type BenchContext, errorNotes, rowFrom, type Scenario } from '../context';
import { closedLoop, fail, OK } from '../load';
import { connectMany, endAll } from '../pg';
import { fmtRate } from '../report';

const DATABASE = 'tenantdb_rawtx';

// reserveSharedSlot's statement with the waiting lock (`FOR UPDATE`): one statement always gets a
// slot, so every transaction does the same work. The service first tries SKIP LOCKED and falls
// back to this one.
const RESERVE = `
  UPDATE db_servers s
     SET current_instances = s.current_instances + 1,
         status = CASE WHEN s.current_instances + 1 >= s.max_instances THEN 'full' ELSE s.status END,
         last_allocated_at = now(),
         updated_at = now()
   WHERE s.id = (SELECT id FROM db_servers
                  WHERE status = 'active' AND server_type = 'shared' AND allocation_strategy = 'auto'
                    AND health_status IN ('healthy', 'unknown')
                    AND current_instances < max_instances
                    AND NOT (id = ANY($1::uuid[]))
                  ORDER BY priority, (current_instances::float8 / max_instances) DESC, id
                  LIMIT 1
                  FOR UPDATE)
     AND s.current_instances < s.max_instances
  RETURNING s.*`;

const INSERT = `
  INSERT INTO tenant_databases
    (instance_id, customer_id, db_server_id, db_name, db_user, password_enc, plan_tier, status, connection_limit)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
  RETURNING *`;

export const rawTx: Scenario = {
  id: 'raw-tx',
  async run(ctx: BenchContext) {
    const { stack, settings } = ctx;
    const adminUrl = stack.catalog.url();
    await adminQuery(adminUrl, `CREATE DATABASE ${DATABASE}`);
    const url = withDatabase(adminUrl, DATABASE);
    const migrator = createCatalogDb({ url, poolSize: 1 });
    try {
      await migrateToLatest(migrator);
    } finally {
      await migrator.destroy();
    }

    const clients = await connectMany(settings.concurrency, () => ({
      connectionString: url,
      options: `-c search_path=${CATALOG_SCHEMA}`,
    }));
    try {
      // Two pools like the real fleet, with room that 16 clients cannot use up in the run.
      for (const name of ['raw-pool-1', 'raw-pool-2']) {
        await clients[0]!.query(
          `INSERT INTO db_servers (name, driver, host, port, server_type, max_instances, status)
           VALUES ($1, 'external', '127.0.0.1', 5432, 'shared', 1000000000, 'active')`,
          [name],
        );
      }
      // A ciphertext of the real shape and length, so rows are as wide as the service's.
      const secrets = createSecretBox([{ id: 'k1', key: randomBytes(32) }]);

      const result = await closedLoop(
        { concurrency: settings.concurrency, durationMs: settings.durationMs, warmupMs: settings.warmupMs },
        async (worker) => {
          const c = clients[worker]!;
          const names = generateTenantNames();
          await c.query('BEGIN');
          try {
            const reserved = await c.query<{ id: string }>(RESERVE, ['{}']);
            const server = reserved.rows[0];
            if (!server) throw new Error('no slot reserved');
            const rowId = randomUUID(); // what the password is bound to, as allocate does
            await c.query(INSERT, [
              randomUUID(),
              randomUUID(),
              server.id,
              names.dbName,
              names.dbUser,
              secrets.encrypt(generatePassword(), rowId),
              'standard',
              'creating',
              20,
            ]);
            await c.query('COMMIT');
            return OK;
          } catch (err) {
            await c.query('ROLLBACK').catch(() => {});
            return fail(err instanceof Error ? err.message : String(err));
          }
        },
      );
      ctx.state.rawTxPerSec = result.throughput;

      return {
        id: 'raw-tx',
        title: 'RAW-TX: the allocation transaction alone (pg, no service)',
        rows: [rowFrom('RAW-TX reserve + insert (pg)', result, { unit: ' tx/s', verdict: 'info' })],
        notes: [
          `${settings.concurrency} pg clients, ${settings.durationMs / 1000} s after ${settings.warmupMs / 1000} s warm-up: BEGIN; ` +
            'the reserve UPDATE of `ServersRepo.reserveSharedSlot` (waiting `FOR UPDATE` variant) … RETURNING; ' +
            'INSERT INTO tenant_databases … RETURNING; COMMIT — four round trips, as Kysely sends them.',
          `Database \`${DATABASE}\` on the catalog server, migrated like the real catalog, two pool rows with ` +
            'max_instances 1,000,000,000 (never fills).',
          'The service’s reservation transaction also inserts an audit_events row; RAW-TX does not, so it is a ' +
            'slightly generous ceiling.',
          `Mean ${result.latency.mean.toFixed(2)} ms, p90 ${result.latency.p90.toFixed(2)} ms, max ${result.latency.max.toFixed(1)} ms; ` +
            `${fmtRate(result.throughput, ' tx/s')} is the baseline of the API rows below.`,
          ...errorNotes(result),
        ],
      };
    } finally {
      await endAll(clients);
      await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`).catch(() => {});
    }
  },
};

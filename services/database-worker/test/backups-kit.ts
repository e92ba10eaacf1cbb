// What the backup tests share: a fleet (one worker, database-service) whose backup store is a real
// S3-protocol server (s3rver from npm, started on a free port), one PostgreSQL 15 pool, and waiting
// for a backup or a restore through the admin API. Every job database-service enqueues is kept
// (`enqueued`), to check what payloads carry.
import type { DbServer } from '@tenantdb/catalog';
import { type S3TestServer, startS3Server, type TenantCredentials } from '@tenantdb/testkit';
import { expect } from 'vitest';
import { type Fleet, startFleet, waitFor } from './harness';
import { asTenant, makePool } from './moves-kit';

export interface BackupFleet {
  f: Fleet;
  s3: S3TestServer;
  pool: DbServer;
  enqueued: { name: string; payload: unknown }[];
  close(): Promise<void>;
}

export async function startBackupFleet(poolName: string): Promise<BackupFleet> {
  const s3 = await startS3Server();
  const f = await startFleet({
    replicas: 1,
    env: {
      TENANTDB_BACKUP_STORE: 's3',
      TENANTDB_BACKUP_S3_BUCKET: s3.bucket,
      TENANTDB_BACKUP_S3_PREFIX: 'test/',
      TENANTDB_BACKUP_S3_ENDPOINT: s3.endpoint,
      TENANTDB_BACKUP_S3_FORCE_PATH_STYLE: 'true',
      TENANTDB_BACKUP_S3_ACCESS_KEY_ID: s3.accessKeyId,
      TENANTDB_BACKUP_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
      TENANTDB_RESTORE_GRACE_MS: '2000',
      // The tests run the scheduler and the drills themselves.
      TENANTDB_BACKUP_SCHEDULE_MS: String(3_600_000),
      TENANTDB_BACKUPS_PER_SERVER: '1',
      TENANTDB_BACKUP_DRILL_INTERVAL_MS: String(3_600_000),
    },
  });
  f.seenSecrets.add(s3.secretAccessKey);
  const enqueued: { name: string; payload: unknown }[] = [];
  const enqueue = f.queues.enqueue.bind(f.queues);
  f.queues.enqueue = ((name, payload, opts) => {
    enqueued.push({ name, payload });
    return enqueue(name, payload, opts);
  }) as typeof f.queues.enqueue;
  const pool = await makePool(f, { name: poolName, priority: 10 });
  return {
    f,
    s3,
    pool,
    enqueued,
    async close() {
      await f.close();
      await s3.close();
    },
  };
}

export const adminOf = (f: Fleet) => (method: 'GET' | 'POST', url: string, body?: unknown) =>
  f.api(method, url, body, f.adminToken);

/** Asks for a backup and waits until it is no longer running; its status must be one of `statuses`. */
export async function backupNow(f: Fleet, instanceId: string, statuses = ['completed']) {
  const admin = adminOf(f);
  const started = await admin('POST', '/api/database/admin/backups', { instance_id: instanceId });
  expect(started.status, JSON.stringify(started.body)).toBe(202);
  expect(started.body.status).toBe('running');
  let last: Record<string, unknown> = {};
  await waitFor(
    async () => {
      last = (await admin('GET', `/api/database/admin/backups/${started.body.id}`)).body;
      return last.status !== 'running';
    },
    120_000,
    'the backup to finish',
  );
  expect(statuses, JSON.stringify(last)).toContain(last.status);
  return last as {
    id: string;
    status: string;
    manifest: Record<string, unknown>;
    error: string | null;
  } & Record<string, unknown>;
}

export async function waitForRestore(f: Fleet, id: string, phases: string[]) {
  const admin = adminOf(f);
  let last: Record<string, unknown> = {};
  await waitFor(
    async () => {
      last = (await admin('GET', `/api/database/admin/restores/${id}`)).body;
      if (last.phase === 'failed' && !phases.includes('failed'))
        throw new Error(`restore failed: ${last.error}`);
      return phases.includes(last.phase as string);
    },
    120_000,
    `restore ${id} to reach ${phases.join('/')}`,
  );
  return last;
}

/** A tenant schema with what a dump must carry: keys, an index, a table without a key, a sequence, a view. */
export const SCHEMA = `
  CREATE SCHEMA app;
  SET search_path = app;
  CREATE TABLE items (id bigserial PRIMARY KEY, v integer NOT NULL, note text);
  CREATE INDEX items_v ON items (v);
  CREATE TABLE events (at timestamptz DEFAULT now(), what text); -- no primary key
  CREATE SEQUENCE ticket_seq START 1000;
  CREATE VIEW recent AS SELECT id, v FROM items ORDER BY id DESC LIMIT 10;
  INSERT INTO items (v, note) SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g;
  INSERT INTO events (what) SELECT 'e' || g FROM generate_series(1, 42) g;
  SELECT setval('ticket_seq', 1234);`;

export async function snapshotOf(c: TenantCredentials) {
  const [row] = await asTenant<{ items: number; sum: string; events: number; ticket: string }>(
    c,
    `SELECT (SELECT count(*)::int FROM app.items) AS items, (SELECT sum(v)::text FROM app.items) AS sum,
            (SELECT count(*)::int FROM app.events) AS events, (SELECT last_value::text FROM app.ticket_seq) AS ticket`,
  );
  return row!;
}

// The backup store's contract, run against both backends: a directory and a real S3-protocol
// server (s3rver from npm, started here on a free port). Streaming writes, visibility only when
// complete, a failed write leaving nothing, list by prefix, head, delete; sealed objects round-trip
// and a store that is down is reported as such (without its credentials).
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { type S3TestServer, startS3Server } from '@tenantdb/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDirStore } from './dir-store';
import { openBackupStore } from './open-store';
import { getOpened, putSealed } from './sealed-objects';
import { BackupDecryptError } from './sealed-stream';
import { type BackupStore, StoreNotFoundError, StoreUnavailableError } from './store';

let dir: string;
let s3: S3TestServer;
const stores: Record<string, () => BackupStore> = {};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tenantdb-store-'));
  s3 = await startS3Server();
  stores.dir = () => createDirStore(join(dir, 'backups'));
  stores.s3 = () =>
    openBackupStore({
      TENANTDB_BACKUP_STORE: 's3',
      TENANTDB_BACKUP_S3_BUCKET: s3.bucket,
      TENANTDB_BACKUP_S3_PREFIX: 'fleet-a/',
      TENANTDB_BACKUP_S3_REGION: 'us-east-1',
      TENANTDB_BACKUP_S3_ENDPOINT: s3.endpoint,
      TENANTDB_BACKUP_S3_FORCE_PATH_STYLE: true,
      TENANTDB_BACKUP_S3_ACCESS_KEY_ID: s3.accessKeyId,
      TENANTDB_BACKUP_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    })!;
}, 60_000);

afterAll(async () => {
  await s3?.close();
  await rm(dir, { recursive: true, force: true });
});

const keys = [{ id: 'k1', key: randomBytes(32) }];

/** A source that yields `good` bytes, then fails (a dump that died). */
function failingSource(good: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= good) {
        this.destroy(new Error('pg_dump exited 1'));
        return;
      }
      const n = Math.min(1024 * 1024, good - sent);
      sent += n;
      this.push(randomBytes(n));
    },
  });
}

describe.each(['dir', 's3'])('the %s backup store', (kind) => {
  const store = () => stores[kind]!();

  it('writes a stream, reads it back, lists by prefix, heads and deletes', async () => {
    const s = store();
    await s.ping();
    const data = randomBytes(9 * 1024 * 1024 + 7); // more than one multipart part
    expect(await s.put('cust-1/t1/b1.tdbk', Readable.from([data.subarray(0, 5), data.subarray(5)]))).toBe(
      data.length,
    );
    await s.put('cust-1/t1/b2.tdbk', Readable.from([Buffer.from('two')]));
    await s.put('cust-1/t2/b3.tdbk', Readable.from([Buffer.from('three')]));
    await s.put('cust-2/t3/b4.tdbk', Readable.from([Buffer.from('four')]));
    expect((await buffer(await s.get('cust-1/t1/b1.tdbk'))).equals(data)).toBe(true);
    expect((await s.list('cust-1/t1/')).map((o) => o.key)).toEqual([
      'cust-1/t1/b1.tdbk',
      'cust-1/t1/b2.tdbk',
    ]);
    expect((await s.list('cust-1/')).map((o) => o.key)).toHaveLength(3);
    expect((await s.list('cust-1/t1/b2')).map((o) => [o.key, o.bytes])).toEqual([['cust-1/t1/b2.tdbk', 3]]);
    expect(await s.head('cust-1/t1/b2.tdbk')).toMatchObject({ key: 'cust-1/t1/b2.tdbk', bytes: 3 });
    expect(await s.head('cust-1/t1/none.tdbk')).toBeUndefined();
    await s.delete('cust-1/t1/b2.tdbk');
    await s.delete('cust-1/t1/b2.tdbk'); // gone already: not an error
    expect(await s.head('cust-1/t1/b2.tdbk')).toBeUndefined();
    await expect(s.get('cust-1/t1/b2.tdbk')).rejects.toBeInstanceOf(StoreNotFoundError);
  });

  it('keeps nothing of a write whose source fails, and never shows a write in progress', async () => {
    const s = store();
    await expect(s.put('cust-3/t/failed.tdbk', failingSource(10 * 1024 * 1024))).rejects.toThrow(
      /pg_dump exited 1/,
    );
    expect(await s.list('cust-3/')).toEqual([]);
    expect(await s.head('cust-3/t/failed.tdbk')).toBeUndefined();
    if (kind === 'dir') expect(await readdir(join(dir, 'backups', 'cust-3', 't'))).toEqual([]);
  });

  it('seals on the way in and opens on the way out; damage in the store is detected', async () => {
    const s = store();
    const data = randomBytes(300_000);
    const written = await putSealed(s, 'cust-4/t/b.tdbk', Readable.from([data]), keys);
    expect(written).toMatchObject({ bytes: data.length, keyId: 'k1' });
    expect(written.storedBytes).toBeGreaterThan(data.length);
    const raw = await buffer(await s.get('cust-4/t/b.tdbk'));
    expect(raw.includes(data.subarray(0, 64))).toBe(false);
    expect((await buffer(await getOpened(s, 'cust-4/t/b.tdbk', keys))).equals(data)).toBe(true);

    raw[raw.length - 100]! ^= 0xff;
    await s.put('cust-4/t/damaged.tdbk', Readable.from([raw]));
    await expect(buffer(await getOpened(s, 'cust-4/t/damaged.tdbk', keys))).rejects.toBeInstanceOf(
      BackupDecryptError,
    );
    const failed = await putSealed(s, 'cust-4/t/cut.tdbk', failingSource(200_000), keys).catch((e) => e);
    expect(failed).toBeInstanceOf(Error);
    expect(await s.head('cust-4/t/cut.tdbk')).toBeUndefined();
  });

  it('refuses keys that would leave its root', async () => {
    const s = store();
    for (const key of ['../x', 'a/../../x', '/abs', 'a//b', '.hidden'])
      await expect(s.put(key, Readable.from([Buffer.from('x')])), key).rejects.toThrow(/object key/);
  });
});

describe('a store that is down', () => {
  it('is unavailable (s3: server stopped), and the error carries no credentials', async () => {
    const s = stores.s3!();
    await s3.stop();
    try {
      const err = await s.ping().catch((e) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      const listed = await s.list('x/').catch((e) => e);
      expect(listed).toBeInstanceOf(StoreUnavailableError);
      for (const e of [err, listed])
        expect(JSON.stringify({ m: e.message, s: e.stack })).not.toContain('S3RVER');
    } finally {
      await s3.start();
    }
    await s.ping();
  });

  it('is unavailable (dir: root cannot be made)', async () => {
    const file = join(dir, 'a-file');
    await writeFile(file, 'not a directory');
    const s = createDirStore(join(file, 'backups'));
    await expect(s.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});

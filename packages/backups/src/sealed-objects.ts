// Backup objects as the jobs see them: plaintext in, sealed (sealed-stream.ts) and stored; stored,
// opened and checked out. The sha256 and size are of the plaintext archive, so a restore checks
// what pg_restore read against what pg_dump wrote.
import { createHash } from 'node:crypto';
import { PassThrough, pipeline, type Readable, Transform } from 'node:stream';
import type { EncryptionKey } from '@tenantdb/secrets';
import { openStream, sealStream } from './sealed-stream';
import type { BackupStore } from './store';

export interface SealedWrite {
  /** Plaintext bytes and their sha256 (hex). */
  bytes: number;
  sha256: string;
  /** Bytes of the stored object (header and tags included). */
  storedBytes: number;
  keyId: string;
}

/** Counts and hashes what flows through. */
export function digestTap(): Transform & { digest(): { bytes: number; sha256: string } } {
  const hash = createHash('sha256');
  let bytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  let result: { bytes: number; sha256: string } | undefined;
  return Object.assign(tap, {
    digest: () => {
      result ??= { bytes, sha256: hash.digest('hex') };
      return result;
    },
  });
}

/**
 * Streams `source` through sha256 and encryption into the store under `key`. Rejects (and the
 * store keeps nothing) if the source fails. Backpressure holds: nothing is buffered beyond a chunk.
 */
export async function putSealed(
  store: BackupStore,
  key: string,
  source: Readable,
  keys: readonly EncryptionKey[],
): Promise<SealedWrite> {
  const tap = digestTap();
  const seal = sealStream(keys);
  // An error of the source destroys the store's body with it, so the write is abandoned, not
  // completed; the store's put reports it.
  const body = pipeline(source, tap, seal, () => {});
  const storedBytes = await store.put(key, body);
  return { ...tap.digest(), storedBytes, keyId: seal.keyId };
}

/** The plaintext of a stored object, decrypted as it is read; errors on any damage. */
export async function getOpened(
  store: BackupStore,
  key: string,
  keys: readonly EncryptionKey[],
): Promise<Readable> {
  const body = await store.get(key);
  return pipeline(body, openStream(keys), new PassThrough(), () => {});
}

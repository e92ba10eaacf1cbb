// The at-rest format of a backup object: a chunked AEAD stream (the STREAM construction of Hoang,
// Reyhanitabar, Rogaway and Vizár), so a dump is encrypted and decrypted as it flows and never held
// whole in memory.
//   header: "TDBK" | version 1 | key id length | key id (ascii) | salt (32 random bytes)
//   chunks: AES-256-GCM of up to 64 KiB each, followed by its 16-byte tag
// The object key is HKDF-SHA256(ring key, salt): a fresh key per object, so the counter nonces
// below never repeat under one key. A chunk's nonce is its index (88 bits) and a final flag (the
// last byte): a chunk moved elsewhere, a stream cut at a chunk boundary (its last chunk is not
// marked final) or a dropped final chunk all fail authentication. The header is every chunk's
// associated data, so the key id and salt cannot be swapped either. The key id says which key of
// TENANTDB_ENCRYPTION_KEYS sealed it: backups made before a rotation still open after it.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import type { EncryptionKey } from '@tenantdb/secrets';

export const CHUNK_BYTES = 64 * 1024;
const TAG_BYTES = 16;
const SALT_BYTES = 32;
const MAGIC = Buffer.from('TDBK', 'ascii');
const VERSION = 1;
const INFO = Buffer.from('tenantdb backup v1', 'ascii');

export class BackupDecryptError extends Error {
  constructor(reason: string) {
    super(`backup object cannot be opened: ${reason}`);
    this.name = 'BackupDecryptError';
  }
}

function objectKey(key: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', key, salt, INFO, 32));
}

function nonce(index: number, final: boolean): Buffer {
  const n = Buffer.alloc(12);
  // 2^53 chunks of 64 KiB are far beyond any dump; the top bytes stay zero.
  n.writeUIntBE(index, 5, 6);
  n[11] = final ? 1 : 0;
  return n;
}

function header(keyId: string, salt: Buffer): Buffer {
  const id = Buffer.from(keyId, 'ascii');
  return Buffer.concat([MAGIC, Buffer.from([VERSION, id.length]), id, salt]);
}

/** Encrypts a stream under the ring's first (current) key. */
export function sealStream(keys: readonly EncryptionKey[]): Transform & { keyId: string } {
  const current = keys[0];
  if (!current) throw new Error('at least one encryption key is required');
  const salt = randomBytes(SALT_BYTES);
  const head = header(current.id, salt);
  const key = objectKey(current.key, salt);
  let index = 0;
  let headerSent = false;
  let pending: Buffer[] = [];
  let pendingBytes = 0;

  const seal = (plain: Buffer, final: boolean): Buffer => {
    const cipher = createCipheriv('aes-256-gcm', key, nonce(index++, final), { authTagLength: TAG_BYTES });
    cipher.setAAD(head);
    return Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
  };

  const stream = new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      if (!headerSent) {
        this.push(head);
        headerSent = true;
      }
      pending.push(chunk);
      pendingBytes += chunk.length;
      // Strictly more than one chunk held: the last full one may still turn out to be the final.
      while (pendingBytes > CHUNK_BYTES) {
        const all = Buffer.concat(pending);
        this.push(seal(all.subarray(0, CHUNK_BYTES), false));
        pending = [all.subarray(CHUNK_BYTES)];
        pendingBytes = all.length - CHUNK_BYTES;
      }
      done();
    },
    flush(done: TransformCallback) {
      if (!headerSent) this.push(head);
      this.push(seal(Buffer.concat(pending), true));
      done();
    },
  });
  return Object.assign(stream, { keyId: current.id });
}

/** The key id in an object's first bytes (without decrypting), or undefined if it has no header. */
export function parseHeader(bytes: Buffer): { keyId: string; salt: Buffer; length: number } | undefined {
  if (bytes.length < MAGIC.length + 2 || !bytes.subarray(0, 4).equals(MAGIC)) return undefined;
  if (bytes[4] !== VERSION) return undefined;
  const idLength = bytes[5]!;
  const length = 6 + idLength + SALT_BYTES;
  if (bytes.length < length) return undefined;
  return {
    keyId: bytes.subarray(6, 6 + idLength).toString('ascii'),
    salt: bytes.subarray(6 + idLength, length),
    length,
  };
}

/**
 * Decrypts what sealStream wrote, with whichever key of the ring its header names. Errors
 * (BackupDecryptError) on any change: a flipped bit, a cut, chunks reordered, a missing end. Data
 * is emitted chunk by chunk as each authenticates, so a consumer must treat everything as
 * unproven until the stream ends without error.
 */
export function openStream(keys: readonly EncryptionKey[]): Transform {
  const byId = new Map(keys.map((k) => [k.id, k.key]));
  let head: Buffer | undefined;
  let key: Buffer | undefined;
  let index = 0;
  let buffered: Buffer = Buffer.alloc(0);
  const sealedChunk = CHUNK_BYTES + TAG_BYTES;

  const open = (sealed: Buffer, final: boolean): Buffer => {
    const decipher = createDecipheriv('aes-256-gcm', key!, nonce(index++, final), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAAD(head!);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    try {
      return Buffer.concat([
        decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch {
      throw new BackupDecryptError(`chunk ${index - 1} failed authentication`);
    }
  };

  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      try {
        if (!head) {
          if (buffered.length < 6) return done();
          if (!buffered.subarray(0, 4).equals(MAGIC) || buffered[4] !== VERSION)
            throw new BackupDecryptError('not a tenantdb backup object (header)');
          const parsed = parseHeader(buffered);
          if (!parsed) return done(); // the rest of the header is still to come
          const ringKey = byId.get(parsed.keyId);
          if (!ringKey)
            throw new BackupDecryptError(`sealed under key ${parsed.keyId}, which is not configured`);
          head = buffered.subarray(0, parsed.length);
          key = objectKey(ringKey, parsed.salt);
          buffered = buffered.subarray(parsed.length);
        }
        while (buffered.length > sealedChunk) {
          this.push(open(buffered.subarray(0, sealedChunk), false));
          buffered = buffered.subarray(sealedChunk);
        }
        done();
      } catch (err) {
        done(err as Error);
      }
    },
    flush(done: TransformCallback) {
      try {
        if (!head) throw new BackupDecryptError('too short to hold a header');
        if (buffered.length < TAG_BYTES) throw new BackupDecryptError('truncated');
        this.push(open(buffered, true));
        done();
      } catch (err) {
        done(err as Error);
      }
    },
  });
}

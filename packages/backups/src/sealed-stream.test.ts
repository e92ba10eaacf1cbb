// The backup object format: round trips of every size around the chunk boundary, and every kind of
// damage detected — a flipped bit anywhere, a cut (at and off chunk boundaries), chunks reordered
// or dropped, another object's header — plus a backup sealed under an old key after a rotation.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { BackupDecryptError, CHUNK_BYTES, openStream, parseHeader, sealStream } from './sealed-stream';

const k1 = { id: 'k1', key: randomBytes(32) };
const k2 = { id: 'k2', key: randomBytes(32) };

/** Feeds `data` in uneven pieces, as a pipe would. */
function source(data: Buffer): Readable {
  const pieces: Buffer[] = [];
  for (let at = 0, n = 1; at < data.length; n = (n * 7 + 3) % 40_000) {
    pieces.push(data.subarray(at, at + n + 1));
    at += n + 1;
  }
  return Readable.from(pieces);
}

const seal = (data: Buffer, keys = [k1]) => buffer(source(data).pipe(sealStream(keys)));
const open = (sealed: Buffer, keys = [k1]) => buffer(source(sealed).pipe(openStream(keys)));

const HEADER = 6 + 2 + 32;
const SEALED_CHUNK = CHUNK_BYTES + 16;

describe('sealed backup stream', () => {
  it.each([0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES, 200_001])(
    'round-trips %i bytes',
    async (n) => {
      const data = randomBytes(n);
      const sealed = await seal(data);
      expect(sealed.subarray(0, 4).toString()).toBe('TDBK');
      expect(parseHeader(sealed)?.keyId).toBe('k1');
      // One tag per chunk; a stream of whole chunks ends with a full final one, an empty one with an empty one.
      expect(sealed.length).toBe(HEADER + Math.max(1, Math.ceil(n / CHUNK_BYTES)) * 16 + n);
      expect((await open(sealed)).equals(data)).toBe(true);
    },
  );

  it('does not hold the plaintext: the ciphertext differs every time and shows none of it', async () => {
    const data = Buffer.alloc(100_000, 'secret-password ');
    const [a, b] = [await seal(data), await seal(data)];
    expect(a.equals(b)).toBe(false);
    expect(a.includes(Buffer.from('secret-password'))).toBe(false);
  });

  it('detects a flipped bit in the header, in a chunk and in a tag', async () => {
    const sealed = await seal(randomBytes(3 * CHUNK_BYTES + 10));
    for (const at of [
      5,
      HEADER - 1,
      HEADER + 10,
      HEADER + SEALED_CHUNK + 100,
      HEADER + SEALED_CHUNK - 1,
      sealed.length - 1,
    ]) {
      const damaged = Buffer.from(sealed);
      damaged[at]! ^= 0x01;
      await expect(open(damaged), `bit at ${at}`).rejects.toBeInstanceOf(BackupDecryptError);
    }
  });

  it('detects truncation at a chunk boundary, inside a chunk, and of the whole body', async () => {
    const sealed = await seal(randomBytes(3 * CHUNK_BYTES + 10));
    for (const length of [
      HEADER + SEALED_CHUNK,
      HEADER + 2 * SEALED_CHUNK,
      sealed.length - 1,
      HEADER + 5,
      HEADER,
      3,
    ]) {
      await expect(open(sealed.subarray(0, length)), `cut at ${length}`).rejects.toBeInstanceOf(
        BackupDecryptError,
      );
    }
  });

  it('detects chunks reordered, dropped or repeated', async () => {
    const sealed = await seal(randomBytes(3 * CHUNK_BYTES + 10));
    const head = sealed.subarray(0, HEADER);
    const chunk = (i: number) => sealed.subarray(HEADER + i * SEALED_CHUNK, HEADER + (i + 1) * SEALED_CHUNK);
    const last = sealed.subarray(HEADER + 3 * SEALED_CHUNK);
    const variants = {
      swapped: [head, chunk(1), chunk(0), chunk(2), last],
      dropped: [head, chunk(0), chunk(2), last],
      repeated: [head, chunk(0), chunk(0), chunk(1), chunk(2), last],
      finalDropped: [head, chunk(0), chunk(1), chunk(2)],
    };
    for (const [name, parts] of Object.entries(variants))
      await expect(open(Buffer.concat(parts)), name).rejects.toBeInstanceOf(BackupDecryptError);
  });

  it("rejects another object's chunks under this header (per-object keys)", async () => {
    const data = randomBytes(CHUNK_BYTES * 2);
    const [a, b] = [await seal(data), await seal(data)];
    const mixed = Buffer.concat([a.subarray(0, HEADER), b.subarray(HEADER)]);
    await expect(open(mixed)).rejects.toBeInstanceOf(BackupDecryptError);
  });

  it('opens a backup sealed under an old key after a rotation; says which key is missing otherwise', async () => {
    const data = randomBytes(CHUNK_BYTES + 5);
    const old = await seal(data, [k1]);
    // Rotated: k2 encrypts now, k1 is still listed to decrypt.
    const fresh = await seal(data, [k2, k1]);
    expect(parseHeader(fresh)?.keyId).toBe('k2');
    expect((await open(old, [k2, k1])).equals(data)).toBe(true);
    expect((await open(fresh, [k2, k1])).equals(data)).toBe(true);
    await expect(open(old, [k2])).rejects.toThrow(/sealed under key k1, which is not configured/);
    // A key of the same id but other bytes is no key at all.
    await expect(open(old, [{ id: 'k1', key: randomBytes(32) }])).rejects.toBeInstanceOf(BackupDecryptError);
  });

  it('refuses something that is not a backup object', async () => {
    await expect(open(randomBytes(1000))).rejects.toThrow(/not a tenantdb backup object/);
  });
});

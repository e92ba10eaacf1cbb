// The format of named API keys: `tdbk_<lookup id>_<secret>`. The lookup id (16 base32 characters,
// 80 bits) is public — it finds the key's row and names the key in lists and logs; the secret is
// 256 random bits. Only SHA-256 of the whole key is stored.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const PREFIX = 'tdbk_';
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
const FORMAT = /^tdbk_([a-z2-7]{16})_([A-Za-z0-9_-]{43})$/;

export interface ParsedApiKey {
  lookupId: string;
  digest: Buffer;
}

function base32(bytes: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}

const digestOf = (key: string) => createHash('sha256').update(key).digest();

/** A new key: the string to hand over once, and what to store of it. */
export function newApiKey(): ParsedApiKey & { key: string } {
  const lookupId = base32(randomBytes(10));
  const key = `${PREFIX}${lookupId}_${randomBytes(32).toString('base64url')}`;
  return { key, lookupId, digest: digestOf(key) };
}

/** The parts of a presented token, or undefined when it is not shaped like a key. */
export function parseApiKey(token: string): ParsedApiKey | undefined {
  const match = FORMAT.exec(token);
  return match ? { lookupId: match[1]!, digest: digestOf(token) } : undefined;
}

/** Whether a presented key's digest is the stored one (constant time). */
export function apiKeyMatches(presented: ParsedApiKey, storedDigest: Buffer): boolean {
  return storedDigest.length === presented.digest.length && timingSafeEqual(storedDigest, presented.digest);
}

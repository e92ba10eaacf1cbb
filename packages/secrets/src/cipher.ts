// AES-256-GCM for secrets at rest. The stored form carries the key id so keys can rotate:
//   v2.<keyId>.<iv b64url>.<tag b64url>.<ciphertext b64url>
// v2 authenticates the id of the catalog row the value belongs to as associated data (`boundTo`),
// so a ciphertext copied into another row does not decrypt there. v1 (written before) has none
// and stays readable, whatever `boundTo` is given.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * GCM's full 128-bit tag, the only length written or accepted. Node verifies a shorter tag as
 * given (down to 4 bytes), so without the pin a forger could cut the tag and guess 32 bits.
 */
const TAG_BYTES = 16;

export interface EncryptionKey {
  id: string;
  key: Buffer;
}

export interface SecretBox {
  /** `boundTo`: the id of the row the value is stored in (its associated data). */
  encrypt(plaintext: string, boundTo: string): string;
  /** Fails (SecretDecryptError) for a v2 value stored for another row than `boundTo`. */
  decrypt(stored: string, boundTo: string): string;
  /** Key id of a stored value, to find values that still need re-encryption after a rotation. */
  keyIdOf(stored: string): string;
}

export class SecretDecryptError extends Error {
  constructor(reason: string) {
    super(`cannot decrypt secret: ${reason}`);
    this.name = 'SecretDecryptError';
  }
}

export function createSecretBox(keys: readonly EncryptionKey[]): SecretBox {
  const [current] = keys;
  if (!current) throw new Error('at least one encryption key is required');
  const byId = new Map(keys.map((k) => [k.id, k.key]));

  return {
    encrypt(plaintext, boundTo) {
      if (!boundTo) throw new Error('a secret is encrypted for the row it is stored in');
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', current.key, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(Buffer.from(boundTo, 'utf8'));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return [
        'v2',
        current.id,
        iv.toString('base64url'),
        tag.toString('base64url'),
        body.toString('base64url'),
      ].join('.');
    },
    decrypt(stored, boundTo) {
      const parts = stored.split('.');
      if (parts.length !== 5 || (parts[0] !== 'v1' && parts[0] !== 'v2')) {
        throw new SecretDecryptError('unknown format');
      }
      const [version, keyId, iv, tag, body] = parts as [string, string, string, string, string];
      const key = byId.get(keyId);
      if (!key) throw new SecretDecryptError(`key ${keyId} is not configured`);
      const tagBytes = Buffer.from(tag, 'base64url');
      if (tagBytes.length !== TAG_BYTES) throw new SecretDecryptError('authentication failed');
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), {
          authTagLength: TAG_BYTES,
        });
        if (version === 'v2') decipher.setAAD(Buffer.from(boundTo, 'utf8'));
        decipher.setAuthTag(tagBytes);
        return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString(
          'utf8',
        );
      } catch {
        throw new SecretDecryptError('authentication failed');
      }
    },
    keyIdOf(stored) {
      return stored.split('.')[1] ?? '';
    },
  };
}

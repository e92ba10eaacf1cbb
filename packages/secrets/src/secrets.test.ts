import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createSecretBox, SecretDecryptError } from './cipher';
import { generatePassword, scramSha256Verifier } from './passwords';

const key = (id: string) => ({ id, key: randomBytes(32) });

describe('secret box', () => {
  const rowA = 'a3c1d2e4-0000-4000-8000-000000000001';
  const rowB = 'a3c1d2e4-0000-4000-8000-000000000002';

  it('round-trips, never stores the plaintext and uses a fresh IV each time', () => {
    const box = createSecretBox([key('k1')]);
    const a = box.encrypt('hunter2-but-longer', rowA);
    const b = box.encrypt('hunter2-but-longer', rowA);
    expect(a).not.toContain('hunter2');
    expect(a).not.toBe(b);
    expect(a.startsWith('v2.k1.')).toBe(true);
    expect(box.decrypt(a, rowA)).toBe('hunter2-but-longer');
  });

  it('binds a value to its row: copied into another row it does not decrypt', () => {
    const box = createSecretBox([key('k1')]);
    const stored = box.encrypt('the admin password', rowA);
    expect(() => box.decrypt(stored, rowB)).toThrow(SecretDecryptError);
    expect(() => box.decrypt(stored, '')).toThrow(SecretDecryptError);
    // Relabelled as v1 (which carries no binding) it fails too: the tag covers the binding.
    expect(() => box.decrypt(stored.replace(/^v2\./, 'v1.'), rowB)).toThrow(SecretDecryptError);
    expect(() => box.encrypt('x', '')).toThrow(/for the row/);
  });

  it('still reads v1 values written before the binding, whatever row is named', () => {
    const k1 = key('k1');
    // A v1 value as the previous code wrote it: AES-256-GCM, no associated data.
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', k1.key, iv, { authTagLength: 16 });
    const body = Buffer.concat([cipher.update('written before', 'utf8'), cipher.final()]);
    const legacy = ['v1', 'k1', iv, cipher.getAuthTag(), body]
      .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
      .join('.');
    expect(createSecretBox([k1]).decrypt(legacy, rowA)).toBe('written before');
    expect(createSecretBox([k1]).decrypt(legacy, rowB)).toBe('written before');
  });

  it('rejects tampered ciphertext', () => {
    const box = createSecretBox([key('k1')]);
    const parts = box.encrypt('secret', rowA).split('.');
    parts[4] = Buffer.from('x'.repeat(6)).toString('base64url');
    expect(() => box.decrypt(parts.join('.'), rowA)).toThrow(SecretDecryptError);
  });

  it('accepts only the full 16-byte tag: a shortened one fails however it was cut', () => {
    const box = createSecretBox([key('k1')]);
    const parts = box.encrypt('secret', rowA).split('.');
    const tag = Buffer.from(parts[3]!, 'base64url');
    for (const length of [4, 8, 12, 15]) {
      const cut = [...parts];
      cut[3] = tag.subarray(0, length).toString('base64url');
      expect(() => box.decrypt(cut.join('.'), rowA)).toThrow(SecretDecryptError);
    }
    expect(box.decrypt(parts.join('.'), rowA)).toBe('secret');
  });

  it('rotates keys: the first key encrypts, older keys still decrypt', () => {
    const k1 = key('k1');
    const k2 = key('k2');
    const old = createSecretBox([k1]).encrypt('before rotation', rowA);
    const rotated = createSecretBox([k2, k1]);
    expect(rotated.decrypt(old, rowA)).toBe('before rotation');
    expect(rotated.keyIdOf(rotated.encrypt('after', rowA))).toBe('k2');
    expect(() => createSecretBox([k2]).decrypt(old, rowA)).toThrow(/k1 is not configured/);
  });
});

describe('passwords', () => {
  it('are at least 32 alphanumerics and do not repeat', () => {
    const seen = new Set(Array.from({ length: 1000 }, () => generatePassword()));
    expect(seen.size).toBe(1000);
    for (const p of seen) expect(p).toMatch(/^[A-Za-z0-9]{40}$/);
    expect(() => generatePassword(16)).toThrow();
  });

  it('SCRAM verifiers have PostgreSQL’s format and a random salt', async () => {
    const a = await scramSha256Verifier('pw');
    const b = await scramSha256Verifier('pw');
    expect(a).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/);
    expect(a).not.toBe(b);
  });
});

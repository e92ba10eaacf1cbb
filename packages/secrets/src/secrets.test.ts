import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createSecretBox, SecretDecryptError } from './cipher';
import { generatePassword, scramSha256Verifier } from './passwords';

const key = (id: string) => ({ id, key: randomBytes(32) });

describe('secret box', () => {
  it('round-trips, never stores the plaintext and uses a fresh IV each time', () => {
    const box = createSecretBox([key('k1')]);
    const a = box.encrypt('hunter2-but-longer');
    const b = box.encrypt('hunter2-but-longer');
    expect(a).not.toContain('hunter2');
    expect(a).not.toBe(b);
    expect(a.startsWith('v1.k1.')).toBe(true);
    expect(box.decrypt(a)).toBe('hunter2-but-longer');
  });

  it('rejects tampered ciphertext', () => {
    const box = createSecretBox([key('k1')]);
    const parts = box.encrypt('secret').split('.');
    parts[4] = Buffer.from('x'.repeat(6)).toString('base64url');
    expect(() => box.decrypt(parts.join('.'))).toThrow(SecretDecryptError);
  });

  it('accepts only the full 16-byte tag: a shortened one fails however it was cut', () => {
    const box = createSecretBox([key('k1')]);
    const parts = box.encrypt('secret').split('.');
    const tag = Buffer.from(parts[3]!, 'base64url');
    for (const length of [4, 8, 12, 15]) {
      const cut = [...parts];
      cut[3] = tag.subarray(0, length).toString('base64url');
      expect(() => box.decrypt(cut.join('.'))).toThrow(SecretDecryptError);
    }
    expect(box.decrypt(parts.join('.'))).toBe('secret');
  });

  it('rotates keys: the first key encrypts, older keys still decrypt', () => {
    const k1 = key('k1');
    const k2 = key('k2');
    const old = createSecretBox([k1]).encrypt('before rotation');
    const rotated = createSecretBox([k2, k1]);
    expect(rotated.decrypt(old)).toBe('before rotation');
    expect(rotated.keyIdOf(rotated.encrypt('after'))).toBe('k2');
    expect(() => createSecretBox([k2]).decrypt(old)).toThrow(/k1 is not configured/);
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

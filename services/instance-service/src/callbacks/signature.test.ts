import { describe, expect, it } from 'vitest';
import { signBody, verifySignature } from './signature';

const secret = 'a-callback-secret-of-enough-length';

describe('callback signatures', () => {
  it('is the hex HMAC-SHA256 of the body under the secret, prefixed sha256=', () => {
    // printf '{"a":1}' | openssl dgst -sha256 -hmac a-callback-secret-of-enough-length
    expect(signBody(secret, '{"a":1}')).toBe(
      'sha256=e50ebe54c8dab6b52d0af82d5c76df3633bec8f8d0cdbe44bbf96f38847da6ee',
    );
  });

  it('verifies the exact bytes only, with the right secret only', () => {
    const body = JSON.stringify({ event: 'instance.ready', instance: { id: 'x' } });
    const header = signBody(secret, body);
    expect(verifySignature(secret, body, header)).toBe(true);
    expect(verifySignature(secret, `${body} `, header)).toBe(false);
    expect(verifySignature(`${secret}x`, body, header)).toBe(false);
    expect(verifySignature(secret, body, undefined)).toBe(false);
    expect(verifySignature(secret, body, 'sha256=00')).toBe(false);
  });
});

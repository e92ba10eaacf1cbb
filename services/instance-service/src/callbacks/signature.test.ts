import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signCallback, verifyCallback } from './signature';

const secret = 'a-callback-secret-of-enough-length';
const ts = 1_764_748_800;

describe('callback signatures', () => {
  it('is the hex HMAC-SHA256 of "<timestamp>.<body>" under the secret, prefixed sha256=', () => {
    // printf '1764748800.{"a":1}' | openssl dgst -sha256 -hmac a-callback-secret-of-enough-length
    const expected = createHmac('sha256', secret).update(`${ts}.{"a":1}`).digest('hex');
    expect(signCallback(secret, ts, '{"a":1}')).toBe(`sha256=${expected}`);
  });

  it('verifies the exact bytes and timestamp only, with the right secret only', () => {
    const body = JSON.stringify({ event: 'instance.ready', instance: { id: 'x' } });
    const signature = signCallback(secret, ts, body);
    const at = { nowSeconds: ts + 10 };
    const ok = { signature, timestamp: String(ts) };
    expect(verifyCallback(secret, body, ok, at)).toBe(true);
    expect(verifyCallback(secret, `${body} `, ok, at)).toBe(false);
    expect(verifyCallback(`${secret}x`, body, ok, at)).toBe(false);
    // The timestamp is signed: moving it forward to pass the tolerance breaks the signature.
    expect(verifyCallback(secret, body, { signature, timestamp: String(ts + 1) }, at)).toBe(false);
    expect(verifyCallback(secret, body, { signature, timestamp: undefined }, at)).toBe(false);
    expect(verifyCallback(secret, body, { signature: undefined, timestamp: String(ts) }, at)).toBe(false);
    expect(verifyCallback(secret, body, { signature: 'sha256=00', timestamp: String(ts) }, at)).toBe(false);
    expect(verifyCallback(secret, body, { signature, timestamp: `${ts}abc` }, at)).toBe(false);
  });

  it('refuses a timestamp outside the tolerance (a replayed request), 5 minutes by default', () => {
    const body = '{"a":1}';
    const headers = { signature: signCallback(secret, ts, body), timestamp: String(ts) };
    expect(verifyCallback(secret, body, headers, { nowSeconds: ts + 300 })).toBe(true);
    expect(verifyCallback(secret, body, headers, { nowSeconds: ts - 300 })).toBe(true);
    expect(verifyCallback(secret, body, headers, { nowSeconds: ts + 301 })).toBe(false);
    expect(verifyCallback(secret, body, headers, { nowSeconds: ts + 301, toleranceSeconds: 600 })).toBe(true);
    expect(verifyCallback(secret, body, headers, { nowSeconds: ts + 61, toleranceSeconds: 60 })).toBe(false);
  });

  it('does not accept the old signature over the body alone', () => {
    const body = '{"a":1}';
    const old = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
    expect(verifyCallback(secret, body, { signature: old, timestamp: String(ts) }, { nowSeconds: ts })).toBe(
      false,
    );
  });
});

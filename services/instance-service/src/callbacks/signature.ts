// Callback signatures: HMAC-SHA256 of the exact body bytes under the shared secret, sent as
// `X-Tenantdb-Signature: sha256=<hex>`. A receiver recomputes it over the raw body it read (before
// any JSON parsing) and compares in constant time.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-tenantdb-signature';

export function signBody(secret: string, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export function verifySignature(secret: string, body: string | Buffer, header: string | undefined): boolean {
  if (!header) return false;
  const expected = Buffer.from(signBody(secret, body));
  const presented = Buffer.from(header.trim());
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

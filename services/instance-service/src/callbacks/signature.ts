// Callback signatures: HMAC-SHA256 under the shared secret of `${timestamp}.${body}`, where the
// timestamp is the unix time in seconds of the attempt, sent as
//   X-Tenantdb-Timestamp: 1764748800
//   X-Tenantdb-Signature: sha256=<hex>
// A receiver recomputes it over the raw body it read (before any JSON parsing), compares in
// constant time, and refuses a timestamp outside its tolerance: a captured request cannot be
// replayed later. docs/api.md shows a receiver's check.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-tenantdb-signature';
export const TIMESTAMP_HEADER = 'x-tenantdb-timestamp';
/** How far a timestamp may be from the receiver's clock, by default. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

export function signCallback(secret: string, timestamp: number, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`;
}

export interface VerifyOptions {
  toleranceSeconds?: number;
  /** The receiver's clock, unix seconds. */
  nowSeconds?: number;
}

/** True only for the signature of this body at this timestamp, with the timestamp recent enough. */
export function verifyCallback(
  secret: string,
  body: string | Buffer,
  headers: { signature: string | undefined; timestamp: string | undefined },
  opts: VerifyOptions = {},
): boolean {
  const { signature, timestamp } = headers;
  if (!signature || !timestamp || !/^\d{1,12}$/.test(timestamp.trim())) return false;
  const ts = Number(timestamp.trim());
  const now = opts.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - ts) > (opts.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS)) return false;
  const expected = Buffer.from(signCallback(secret, ts, body));
  const presented = Buffer.from(signature.trim());
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

// Where backup objects live, behind one small interface: a directory (the embedded default) or
// S3-compatible object storage (s3-store.ts). Objects are written from a stream and become visible
// only once complete; nothing here knows what is inside them (sealed-stream.ts encrypts).
import type { Readable } from 'node:stream';

export interface StoredObject {
  key: string;
  bytes: number;
  modified: Date;
}

export interface BackupStore {
  /** 'dir' or 's3': shown to operators, never a location or a credential. */
  readonly kind: 'dir' | 's3';
  /** Writes `body` under `key`; visible only when the whole stream is in. Bytes written. */
  put(key: string, body: Readable): Promise<number>;
  /** The object's bytes; StoreNotFoundError when there is none. */
  get(key: string): Promise<Readable>;
  head(key: string): Promise<StoredObject | undefined>;
  /** Removes the object; one that is not there is not an error. */
  delete(key: string): Promise<void>;
  /** Every complete object whose key starts with `prefix`, in key order. */
  list(prefix: string): Promise<StoredObject[]>;
  /** Throws StoreUnavailableError when the store cannot be reached (readiness, the API's 503). */
  ping(): Promise<void>;
}

/** The store could not be reached or refused the request: the caller may try again later. */
export class StoreUnavailableError extends Error {
  constructor(what: string) {
    super(`backup store unavailable: ${what}`);
    this.name = 'StoreUnavailableError';
  }
}

export class StoreNotFoundError extends Error {
  constructor(key: string) {
    super(`backup object ${key} is not in the store`);
    this.name = 'StoreNotFoundError';
  }
}

/**
 * Object keys are tenantdb's own (`<customer>/<tenant database id>/<backup id>.tdbk`): path-like
 * segments of safe characters only, so a key never climbs out of a directory store's root.
 */
export function checkKey(key: string): string {
  if (
    typeof key !== 'string' ||
    !/^[A-Za-z0-9_-][A-Za-z0-9._-]*(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/.test(key) ||
    key.length > 512
  )
    throw new Error('a backup object key is /-separated segments of letters, digits, . _ -');
  return key;
}

export function checkPrefix(prefix: string): string {
  if (prefix === '') return prefix;
  return checkKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix) && prefix;
}

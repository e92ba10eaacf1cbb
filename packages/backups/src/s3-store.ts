// S3-compatible object storage as the backup store (AWS S3, or any server speaking its protocol;
// the tests use s3rver). Writes are multipart uploads (lib-storage's Upload, parts of 8 MiB, two
// in flight): an object appears only when the upload completes, and a failed one is aborted, so
// no partial object is ever listed. Errors are reported by their kind, never with the endpoint's
// answer body or the credentials.

import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  NotFound,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import {
  type BackupStore,
  checkKey,
  checkPrefix,
  type StoredObject,
  StoreNotFoundError,
  StoreUnavailableError,
} from './store';

export interface S3StoreOptions {
  bucket: string;
  /** Prepended to every key (e.g. `tenantdb/`); the store's own keys never include it. */
  prefix: string;
  region: string;
  endpoint?: string;
  forcePathStyle: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

const PART_BYTES = 8 * 1024 * 1024;

/** What went wrong, without the answer's body or anything the request carried. */
function unavailable(what: string, err: unknown): StoreUnavailableError {
  const e = err as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  return new StoreUnavailableError(
    `${what}: ${e.code ?? e.name ?? 'error'}${status ? ` (HTTP ${status})` : ''}`,
  );
}

export function createS3Store(opts: S3StoreOptions): BackupStore {
  const client = new S3Client({
    region: opts.region,
    forcePathStyle: opts.forcePathStyle,
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    // A store that is down answers the API's 503 quickly instead of after the SDK's long retries.
    maxAttempts: 2,
  });
  const Bucket = opts.bucket;
  const full = (key: string) => `${opts.prefix}${checkKey(key)}`;

  return {
    kind: 's3',
    async put(key, body) {
      let bytes = 0;
      body.on('data', (d: Buffer) => {
        bytes += d.length;
      });
      const upload = new Upload({
        client,
        params: { Bucket, Key: full(key), Body: body },
        partSize: PART_BYTES,
        queueSize: 2,
        leavePartsOnError: false,
      });
      try {
        await upload.done();
      } catch (err) {
        // A failure of the body (the dump) is the body's error; the store's own is unavailable.
        if (body.errored) throw body.errored;
        throw unavailable('upload', err);
      }
      return bytes;
    },
    async get(key) {
      const Key = full(key);
      try {
        const res = await client.send(new GetObjectCommand({ Bucket, Key }));
        return res.Body as Readable;
      } catch (err) {
        if (err instanceof NoSuchKey) throw new StoreNotFoundError(key);
        throw unavailable('get', err);
      }
    },
    async head(key) {
      const Key = full(key);
      try {
        const res = await client.send(new HeadObjectCommand({ Bucket, Key }));
        return { key, bytes: res.ContentLength ?? 0, modified: res.LastModified ?? new Date(0) };
      } catch (err) {
        if (
          err instanceof NotFound ||
          (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404
        )
          return undefined;
        throw unavailable('head', err);
      }
    },
    async delete(key) {
      const Key = full(key);
      try {
        await client.send(new DeleteObjectCommand({ Bucket, Key }));
      } catch (err) {
        throw unavailable('delete', err);
      }
    },
    async list(prefix) {
      checkPrefix(prefix);
      const out: StoredObject[] = [];
      let token: string | undefined;
      try {
        do {
          const res = await client.send(
            new ListObjectsV2Command({ Bucket, Prefix: `${opts.prefix}${prefix}`, ContinuationToken: token }),
          );
          for (const o of res.Contents ?? [])
            if (o.Key)
              out.push({
                key: o.Key.slice(opts.prefix.length),
                bytes: o.Size ?? 0,
                modified: o.LastModified ?? new Date(0),
              });
          token = res.IsTruncated ? res.NextContinuationToken : undefined;
        } while (token);
      } catch (err) {
        throw unavailable('list', err);
      }
      return out.sort((a, b) => a.key.localeCompare(b.key));
    },
    async ping() {
      try {
        await client.send(new HeadBucketCommand({ Bucket }));
      } catch (err) {
        throw unavailable('bucket', err);
      }
    },
  };
}

// A real S3-protocol server for tests: s3rver (npm), in this process, on a free loopback port, with
// its objects in a temporary directory. No MinIO or Ceph package is reachable here; s3rver speaks
// the protocol the AWS SDK does (signed requests, multipart uploads, ListObjectsV2). Its one
// account is S3RVER / S3RVER.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@tenantdb/local-servers';
// @ts-expect-error s3rver ships no types
import S3rver from 's3rver';

export interface S3TestServer {
  endpoint: string;
  port: number;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Stops answering (the store is down) until start() again; the objects stay. */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function startS3Server(bucket = 'tenantdb-backups'): Promise<S3TestServer> {
  const directory = await mkdtemp(join(tmpdir(), 'tenantdb-s3-'));
  const port = await freePort();
  let server: { run(): Promise<unknown>; close(): Promise<void> } | undefined;
  const start = async () => {
    server = new S3rver({
      port,
      address: '127.0.0.1',
      silent: true,
      directory,
      configureBuckets: [{ name: bucket }],
    });
    await server!.run();
  };
  const stop = async () => {
    await server?.close();
    server = undefined;
  };
  await start();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    bucket,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    start,
    stop,
    async close() {
      await stop();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

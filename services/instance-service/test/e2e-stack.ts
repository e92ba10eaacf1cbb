// The stack exactly as `pnpm dev` wires it (packages/devstack startDevStack: real processes started
// with node --import tsx, its own catalog Postgres and Redis, the local driver), on free ports in a
// temporary state dir. close() removes every server it made and fails the test if a process died
// unexpectedly or a token, key or password reached any process's output.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCatalogDb, type DbServer } from '@tenantdb/catalog';
import { encryptionKeys } from '@tenantdb/config';
import { type DevStack, startDevStack } from '@tenantdb/devstack';
import { createSecretBox } from '@tenantdb/secrets';
import { freePort } from '@tenantdb/testkit';
import pg from 'pg';
import { expect } from 'vitest';
import { createInstancesDb } from '../src/db';

export type E2EStack = Awaited<ReturnType<typeof startE2EStack>>;

export async function startE2EStack(env: Record<string, string> = {}) {
  const stateDir = await mkdtemp(join(tmpdir(), 'tenantdb-e2e-'));
  const output = new Map<string, string>();
  const unexpectedExits: string[] = [];
  // The test's own environment, without anything that would configure the stack behind its back.
  const baseEnv = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !/^(TENANTDB_|DATABASE_|REDIS_|INSTANCE_SERVICE_|LOG_LEVEL)/.test(k),
    ),
  );
  const stack: DevStack = await startDevStack({
    stateDir,
    ports: {
      databaseService: await freePort(),
      instanceService: await freePort(),
      workers: [await freePort(), await freePort()],
    },
    baseEnv,
    env: {
      DATABASE_SERVICE_HOST: '127.0.0.1',
      INSTANCE_SERVICE_HOST: '127.0.0.1',
      DATABASE_WORKER_HOST: '127.0.0.1',
      TENANTDB_RATE_LIMIT_PER_MINUTE: '1000000',
      TENANTDB_RETRY_AFTER_SECONDS: '1',
      TENANTDB_WARM_DATABASES: '2',
      // Test servers need no durability; it makes CREATE DATABASE several times faster.
      TENANTDB_SERVER_SETTINGS: 'fsync=off,synchronous_commit=off',
      LOG_LEVEL: 'info',
      ...env,
    },
    waitForPool: false,
    output: (name, chunk) => output.set(name, (output.get(name) ?? '') + chunk.toString('utf8')),
    onUnexpectedExit: (name, code) => unexpectedExits.push(`${name} exited with ${code}`),
  });
  const catalog = createCatalogDb({ url: stack.catalogUrl, poolSize: 4 });
  const instancesDb = createInstancesDb({ url: stack.catalogUrl, poolSize: 2 });
  const secrets = createSecretBox(encryptionKeys.parse(stack.encryptionKeys));
  // Every secret the stack generated (tokens, callback secret, catalog password, encryption key).
  const seenSecrets = new Set<string>(Object.values(stack.secrets));
  const portal = stack.secrets.portalToken;

  async function api(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ) {
    const response = await fetch(`${stack.urls.instanceService}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${portal}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    // biome-ignore lint/suspicious/noExplicitAny: a parsed JSON body, checked field by field
    const json: any = text ? JSON.parse(text) : undefined;
    if (json?.db_password) seenSecrets.add(json.db_password);
    return { status: response.status, body: json };
  }

  /** database-service, as instance-service calls it (allocate token). */
  async function databaseService(method: 'GET' | 'POST' | 'DELETE', path: string) {
    const response = await fetch(`${stack.urls.databaseService}${path}`, {
      method,
      headers: { authorization: `Bearer ${stack.secrets.allocateToken}` },
    });
    // biome-ignore lint/suspicious/noExplicitAny: a parsed JSON body, checked field by field
    const body: any = await response.json();
    return { status: response.status, body };
  }

  async function waitForStatus(id: string, customerId: string, statuses: string[], timeoutMs = 60_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = await api('GET', `/api/v1/instances/${id}?customer_id=${customerId}`).catch(
        () => undefined,
      );
      if (statuses.includes(res?.body?.status)) return res!.body;
      if (Date.now() > deadline)
        throw new Error(`instance ${id} is ${res?.body?.status} after ${timeoutMs} ms, not ${statuses}`);
      await sleep(200);
    }
  }

  /** Runs SQL on a pool server as its admin (password decrypted from the catalog). */
  async function asAdmin<T extends pg.QueryResultRow>(
    server: DbServer,
    text: string,
    values: unknown[] = [],
  ) {
    const client = new pg.Client({
      host: server.host!,
      port: server.port!,
      user: server.admin_user!,
      password: secrets.decrypt(server.admin_password_enc!, server.id),
      database: 'postgres',
    });
    await client.connect();
    try {
      return (await client.query<T>(text, values)).rows;
    } finally {
      await client.end();
    }
  }

  return {
    stack,
    catalog,
    instancesDb,
    api,
    databaseService,
    waitForStatus,
    asAdmin,
    servers: () => catalog.selectFrom('db_servers').selectAll().orderBy('created_at').execute(),
    output: () => [...output.values()].join('\n'),
    async close() {
      for (const s of await catalog
        .selectFrom('db_servers')
        .selectAll()
        .execute()
        .catch(() => []))
        if (s.admin_password_enc) seenSecrets.add(secrets.decrypt(s.admin_password_enc, s.id));
      await catalog.destroy();
      await instancesDb.destroy();
      await stack.destroy();
      expect(unexpectedExits, 'a process of the stack died').toEqual([]);
      const text = [...output.values()].join('\n');
      expect(text.length, 'the processes logged nothing').toBeGreaterThan(1000);
      for (const secret of seenSecrets)
        expect(text.includes(secret), 'a secret reached the logs').toBe(false);
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

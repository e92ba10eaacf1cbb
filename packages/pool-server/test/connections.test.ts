// The admin connection bound against a real Postgres: it is counted per address, so catalog rows
// that name the same Postgres share it, and rows that name different ones do not.
import { randomUUID } from 'node:crypto';
import { createSecretBox, generatePassword, type SecretBox } from '@tenantdb/secrets';
import { type RunningPostgres, startPostgres } from '@tenantdb/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPoolConnections, type PoolServerTarget } from '../src';

const MAX_PER_SERVER = 3;
const HOLD_MS = 300;

let server: RunningPostgres;
let secrets: SecretBox;

beforeAll(async () => {
  server = await startPostgres({ password: generatePassword(), settings: { fsync: 'off' } });
  secrets = createSecretBox([{ id: 'k1', key: Buffer.alloc(32, 7) }]);
});
afterAll(async () => {
  await server?.destroy();
});

/** A catalog row for the test server, under its own id, reached through `host`. */
function row(host: string): PoolServerTarget {
  const id = randomUUID();
  return {
    id,
    host,
    port: server.port,
    admin_user: server.user,
    admin_password_enc: secrets.encrypt(server.password, id),
    admin_database: 'postgres',
  };
}

/** Runs `calls` admin queries at once spread over `targets`; the most that held a connection together. */
async function mostAtOnce(targets: PoolServerTarget[], calls: number): Promise<number> {
  const connections = createPoolConnections(secrets, { maxPerServer: MAX_PER_SERVER });
  let inside = 0;
  let most = 0;
  try {
    await Promise.all(
      Array.from({ length: calls }, (_, i) =>
        connections.withClient(targets[i % targets.length]!, async (client) => {
          most = Math.max(most, ++inside);
          await client.query('SELECT pg_sleep($1::float8)', [HOLD_MS / 1000]);
          inside--;
        }),
      ),
    );
  } finally {
    await connections.close();
  }
  return most;
}

describe('admin connections to pool servers', () => {
  it('bound a Postgres as a whole, however many catalog rows name its address', async () => {
    const rows = [row('127.0.0.1'), row('127.0.0.1'), row('127.0.0.1')];
    expect(await mostAtOnce(rows, 4 * MAX_PER_SERVER)).toBe(MAX_PER_SERVER);
  });

  it('bound each address on its own', async () => {
    // Two names for the same test server: to the bound they are two Postgres servers.
    const rows = [row('127.0.0.1'), row('localhost')];
    expect(await mostAtOnce(rows, 4 * MAX_PER_SERVER)).toBe(2 * MAX_PER_SERVER);
  });
});

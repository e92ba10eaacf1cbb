import type { ConfigError } from '@tenantdb/config';
import { expect, it } from 'vitest';
import { loadConfig } from '../src/config';

const base = {
  DATABASE_URL: 'postgres://catalog/tenantdb',
  REDIS_URL: 'redis://127.0.0.1:6379',
  TENANTDB_ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 1).toString('base64')}`,
};

it('refuses to boot when the admin and allocate tokens are the same value', () => {
  const token = 't'.repeat(32);
  let problems: string[] = [];
  try {
    loadConfig({ ...base, TENANTDB_ADMIN_TOKEN: token, TENANTDB_ALLOCATE_TOKEN: token });
  } catch (err) {
    problems = (err as ConfigError).problems;
  }
  expect(problems).toEqual(['TENANTDB_ALLOCATE_TOKEN: must differ from TENANTDB_ADMIN_TOKEN']);
  const distinct = { TENANTDB_ADMIN_TOKEN: 'a'.repeat(32), TENANTDB_ALLOCATE_TOKEN: 'b'.repeat(32) };
  expect(loadConfig({ ...base, ...distinct }).TENANTDB_ALLOCATE_TOKEN).toBe('b'.repeat(32));
});

import type { ConfigError } from '@tenantdb/config';
import { expect, it } from 'vitest';
import { loadConfig } from '../src/config';

const base = { DATABASE_URL: 'postgres://catalog/tenantdb', REDIS_URL: 'redis://127.0.0.1:6379' };

it('refuses to boot when the portal token, the allocate token or the callback secret share a value', () => {
  const shared = 's'.repeat(32);
  let problems: string[] = [];
  try {
    loadConfig({
      ...base,
      TENANTDB_PORTAL_TOKEN: shared,
      TENANTDB_ALLOCATE_TOKEN: 'a'.repeat(32),
      TENANTDB_CALLBACK_SECRET: shared,
    });
  } catch (err) {
    problems = (err as ConfigError).problems;
  }
  expect(problems).toEqual(['TENANTDB_CALLBACK_SECRET: must differ from TENANTDB_PORTAL_TOKEN']);
});

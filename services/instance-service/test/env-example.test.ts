// Every variable instance-service reads is documented in .env.example, and the documented
// defaults are the ones the process uses.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { InstanceServiceConfig, loadConfig } from '../src/config';

const example = readFileSync(fileURLToPath(new URL('../../../.env.example', import.meta.url)), 'utf8');
const documented = new Map(
  example
    .split('\n')
    .filter((line) => /^[A-Z][A-Z0-9_]*=/.test(line))
    .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const),
);

it('.env.example documents every variable of instance-service, with its default', () => {
  const names = Object.keys(InstanceServiceConfig.shape);
  expect(names.filter((n) => !documented.has(n))).toEqual([]);
  const required = { DATABASE_URL: 'x', REDIS_URL: 'x' };
  const secrets = {
    TENANTDB_PORTAL_TOKEN: 'p'.repeat(24),
    TENANTDB_ALLOCATE_TOKEN: 'a'.repeat(24),
    TENANTDB_CALLBACK_SECRET: 'c'.repeat(24),
  };
  const defaults = loadConfig({ ...required, ...secrets });
  for (const name of names) {
    const value = documented.get(name)!;
    if (value === '' || name in required) continue;
    const fromExample = loadConfig({ ...required, ...secrets, [name]: value })[name as keyof typeof defaults];
    expect(fromExample, name).toEqual(defaults[name as keyof typeof defaults]);
  }
});

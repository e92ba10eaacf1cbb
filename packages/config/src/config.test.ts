import { describe, expect, it } from 'vitest';
import { ConfigError, distinctSecrets, encryptionKeys, env, parseConfig, z } from './index';

const schema = z.object({
  PORT: env.port(8005),
  TOKEN: env.token(),
  KEYS: encryptionKeys,
  FLAG: env.bool(false),
});

describe('parseConfig', () => {
  it('reports every problem at once, naming variables but never their values', () => {
    try {
      parseConfig(schema, { PORT: '99999', TOKEN: 'short-secret-value', KEYS: 'k1:notbase64' });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const problems = (err as ConfigError).problems;
      expect(problems.map((p) => p.split(':')[0])).toEqual(['PORT', 'TOKEN', 'KEYS']);
      expect((err as Error).message).not.toContain('short-secret-value');
    }
  });

  it('applies defaults, coerces and freezes', () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    const config = parseConfig(schema, {
      TOKEN: 'x'.repeat(24),
      KEYS: `new:${key},old:${key}`,
      FLAG: 'true',
    });
    expect(config.PORT).toBe(8005);
    expect(config.FLAG).toBe(true);
    expect(config.KEYS.map((k) => k.id)).toEqual(['new', 'old']);
    expect(Object.isFrozen(config)).toBe(true);
  });
});

describe('distinctSecrets', () => {
  const tokens = z
    .object({ ADMIN: env.token(), ALLOCATE: env.token(), OTHER: env.token() })
    .superRefine(distinctSecrets(['ADMIN', 'ALLOCATE', 'OTHER']), { when: () => true });

  it('refuses one value for two tokens, naming both variables and never the value', () => {
    const shared = 's'.repeat(32);
    try {
      parseConfig(tokens, { ADMIN: shared, ALLOCATE: 'a'.repeat(32), OTHER: shared });
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).problems).toEqual(['OTHER: must differ from ADMIN']);
      expect((err as Error).message).not.toContain(shared);
    }
  });

  it('accepts distinct tokens', () => {
    expect(
      parseConfig(tokens, { ADMIN: 'a'.repeat(24), ALLOCATE: 'b'.repeat(24), OTHER: 'c'.repeat(24) }).ADMIN,
    ).toBe('a'.repeat(24));
  });
});

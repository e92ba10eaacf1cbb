// An HTTP app on the shared base for the package's own tests: no tokens, generous limits, silent
// unless a test passes a logger; each test adds the routes it needs.
import { createLogger, Registry } from '@tenantdb/observability';
import { createHttpApp, type HttpApp, type HttpAppOptions } from '../src';

export function createTestApp(overrides: Partial<HttpAppOptions> = {}): Promise<HttpApp> {
  return createHttpApp({
    name: 'test',
    version: '0.0.0',
    description: 'a test app',
    logger: createLogger({ name: 'test', level: 'silent' }),
    registry: new Registry(),
    tokens: [],
    rateLimitPerMinute: 1_000,
    bodyLimitBytes: 1_024,
    readiness: {},
    ...overrides,
  });
}

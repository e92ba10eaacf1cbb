import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * Paths that may carry credentials anywhere in a log object. Redaction is a second line of
 * defence: code does not log secrets in the first place.
 */
export const REDACT_PATHS = [
  'password',
  '*.password',
  'db_password',
  '*.db_password',
  'admin_password',
  '*.admin_password',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'headers.authorization',
  'connectionString',
  '*.connectionString',
];

export function createLogger(
  opts: { name: string; level: string; base?: Record<string, unknown> },
  destination?: DestinationStream,
): Logger {
  return pino(
    {
      name: opts.name,
      level: opts.level,
      base: { service: opts.name, ...opts.base },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

import { z } from 'zod';

export const uuid = z.uuid();
export const planTier = z
  .string()
  .min(1)
  .max(32)
  .regex(/^[a-z][a-z0-9_-]{0,31}$/, 'lowercase letters, digits, "_" or "-", starting with a letter');

// What free text may hold. PostgreSQL's text and jsonb cannot store NUL, and control characters
// (C0, DEL, C1) in a value end up in logs, terminals and other systems' parsers; text that a
// person reads (a name) also may not reorder itself or hide characters (bidi controls, zero-width
// characters: "Trojan Source" look-alikes). Lone surrogates cannot be stored as UTF-8.
/** \p{Cc}: C0 (U+0000–U+001F), DEL and C1 (U+007F–U+009F). */
const CONTROL = /\p{Cc}/u;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const BIDI_OR_INVISIBLE = /[\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]/u;
// Zero-width (non-)joiners are how emoji sequences (👩‍💻) and Persian or Indic words are written;
// beside ASCII, at an end or doubled they only hide something ("ad\u200dmin").
const STRAY_JOINER =
  /^[\u200c\u200d]|[\u200c\u200d]$|[\p{ASCII}\u200c\u200d][\u200c\u200d]|[\u200c\u200d]\p{ASCII}/u;

/** Free text of at most `max` characters: no control characters, well-formed Unicode. */
export const freeText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((value) => !CONTROL.test(value), 'must not contain control characters (NUL, C0, DEL, C1)')
    .refine((value) => !LONE_SURROGATE.test(value), 'must be well-formed Unicode (no lone surrogates)');

/** Text a person reads as a name: free text that also cannot reorder or hide characters. */
export const displayName = (max: number) =>
  freeText(max)
    .min(1)
    .refine(
      (value) => !BIDI_OR_INVISIBLE.test(value) && !STRAY_JOINER.test(value),
      'must not contain bidirectional-control or zero-width characters',
    );

/**
 * A number stored in a numeric(precision, scale) column: at most `scale` decimal places (so it
 * cannot round to another value, or to 0, on the way in) and within the column's range.
 */
export const decimal = (opts: { scale: number; min: number; max: number }) => {
  const factor = 10 ** opts.scale;
  return z
    .number()
    .min(opts.min)
    .max(opts.max)
    .refine(
      (value) => Math.abs(value * factor - Math.round(value * factor)) < 1e-6,
      `at most ${opts.scale} decimal places`,
    );
};

/** The one error shape every service answers with. */
export const ErrorResponse = z.object({
  statusCode: z.number().int(),
  error: z.string(),
  message: z.string(),
  requestId: z.string(),
});
export type ErrorResponse = z.infer<typeof ErrorResponse>;

import { z } from 'zod';

export const uuid = z.uuid();
export const planTier = z
  .string()
  .min(1)
  .max(32)
  .regex(/^[a-z][a-z0-9_-]{0,31}$/, 'lowercase letters, digits, "_" or "-", starting with a letter');

/** The one error shape every service answers with. */
export const ErrorResponse = z.object({
  statusCode: z.number().int(),
  error: z.string(),
  message: z.string(),
  requestId: z.string(),
});
export type ErrorResponse = z.infer<typeof ErrorResponse>;

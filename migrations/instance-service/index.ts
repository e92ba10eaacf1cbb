// The ordered list of instance-service migrations (schema "instances"). Listed explicitly, like
// database-service's, so every runner sees the same set.
import type { Migration } from 'kysely/migration';
import * as m0001 from './0001_instances';
import * as m0002 from './0002_audit_events';
import * as m0003 from './0003_idempotency_per_customer';

export const migrations: Record<string, Migration> = {
  '0001_instances': m0001,
  '0002_audit_events': m0002,
  '0003_idempotency_per_customer': m0003,
};

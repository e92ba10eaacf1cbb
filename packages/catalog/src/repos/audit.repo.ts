import type { CatalogDb, Executor } from '../db';
import type { AuditEvent } from '../types';

export type AuditRepo = ReturnType<typeof createAuditRepo>;

export function createAuditRepo(db: CatalogDb) {
  return {
    async record(event: AuditEvent, trx: Executor = db): Promise<void> {
      await trx.insertInto('audit_events').values(event).execute();
    },
  };
}

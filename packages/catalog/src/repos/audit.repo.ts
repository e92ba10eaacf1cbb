import type { CatalogDb, CatalogTrx, Executor } from '../db';
import type { AuditEvent } from '../types';

export type AuditRepo = ReturnType<typeof createAuditRepo>;

export function createAuditRepo(db: CatalogDb) {
  return {
    async record(event: AuditEvent, trx: Executor = db): Promise<void> {
      await trx.insertInto('audit_events').values(event).execute();
    },

    /**
     * A write and its audit event in one transaction: when `write` changed something (a row came
     * back), `event(row)` is recorded beside it, so the change and its trace commit together or
     * not at all. Undefined (nothing recorded) when the write matched nothing.
     */
    audited<T>(
      write: (trx: CatalogTrx) => Promise<T | undefined>,
      event: (row: T) => AuditEvent,
    ): Promise<T | undefined> {
      return db.transaction().execute(async (trx) => {
        const row = await write(trx);
        if (row !== undefined) await trx.insertInto('audit_events').values(event(row)).execute();
        return row;
      });
    },
  };
}

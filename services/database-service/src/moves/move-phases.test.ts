// The API's move phases (@tenantdb/contracts, zod only) and the catalog's (@tenantdb/catalog, the
// CHECK of tenant_moves.phase) are written in both packages, which do not depend on each other:
// database-service, which serves the one from the other, keeps them the same.
import { MOVE_PHASES } from '@tenantdb/catalog';
import { MOVE_PHASE } from '@tenantdb/contracts';
import { describe, expect, it } from 'vitest';

describe('move phases', () => {
  it('are the same, in the same order, in the API and in the catalog', () => {
    expect(MOVE_PHASE.options).toEqual([...MOVE_PHASES]);
  });
});

import { describe, expect, it } from 'vitest';
import {
  conninfo,
  createSubscriptionStatement,
  moveObjectName,
  replicationRoleStatements,
  splitPrimaryKeys,
} from './move.sql';

describe('move SQL', () => {
  it('names every object of a move from its id, outside the tenant prefix', () => {
    expect(moveObjectName('0B5C2E9A-1111-4222-8333-944445555666')).toBe(
      'tenantdb_move_0b5c2e9a111142228333944445555666',
    );
    expect(() => moveObjectName('x; DROP')).toThrow(/uuid/);
  });

  it('quotes conninfo values, and the whole of it as one literal in CREATE SUBSCRIPTION', () => {
    const info = conninfo({ host: 'h', port: 5432, password: "a'b\\c d" });
    expect(info).toBe("host='h' port='5432' password='a\\'b\\\\c d'");
    expect(createSubscriptionStatement('tenantdb_move_x', info)).toBe(
      `CREATE SUBSCRIPTION "tenantdb_move_x" CONNECTION 'host=''h'' port=''5432'' password=''a\\''b\\\\c d''' PUBLICATION "tenantdb_move_x" WITH (copy_data = true, create_slot = true, slot_name = 'tenantdb_move_x')`,
    );
    expect(replicationRoleStatements('tenantdb_move_x', 'tdb_a_u', 'SCRAM-SHA-256$v')).toHaveLength(3);
  });

  it('restores primary keys early and everything else of post-data after the copy', () => {
    const toc = [
      ';',
      '; Archive created at 2026-12-03',
      '215; 1259 16390 TABLE app items tdb_a_u',
      '3205; 2606 16400 CONSTRAINT app items items_pkey tdb_a_u',
      '3206; 2606 16402 CONSTRAINT app items items_v_check tdb_a_u',
      '3207; 1259 16404 INDEX app items_v tdb_a_u',
      '3208; 2606 16406 FK CONSTRAINT app notes notes_item_id_fkey tdb_a_u',
    ].join('\n');
    const { keys, rest } = splitPrimaryKeys(toc, new Set(['app items items_pkey']));
    expect(keys.trim().split('\n')).toEqual(['3205; 2606 16400 CONSTRAINT app items items_pkey tdb_a_u']);
    const restLines = rest.trim().split('\n');
    expect(restLines).toContain(';3205; 2606 16400 CONSTRAINT app items items_pkey tdb_a_u');
    expect(restLines).toContain('3207; 1259 16404 INDEX app items_v tdb_a_u');
    expect(restLines).toContain('3206; 2606 16402 CONSTRAINT app items items_v_check tdb_a_u');
  });
});

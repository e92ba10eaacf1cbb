import { describe, expect, it } from 'vitest';
import { PermanentProvisionError } from './provisioner';
import {
  maxConnectionsFor,
  postgresArgs,
  replicationSettings,
  tunedSettings,
  validateSettings,
} from './tuning';

const REPLICATION = replicationSettings();

describe('tunedSettings', () => {
  it('sizes max_connections from every slot at the plan limit plus the platform, never under 100', () => {
    expect(maxConnectionsFor(50, 40)).toBe(2020);
    expect(maxConnectionsFor(1, 200)).toBe(220);
    expect(maxConnectionsFor(2, 5)).toBe(100);
    expect(tunedSettings({ maxInstances: 10, connectionLimit: 20, memoryLimitMb: null })).toEqual({
      max_connections: '220',
      ...REPLICATION,
    });
    // Without a plan limit the default applies.
    expect(tunedSettings({ maxInstances: 10, memoryLimitMb: null }).max_connections).toBe('220');
  });

  it('derives memory settings from the memory limit, and explicit settings win', () => {
    expect(tunedSettings({ maxInstances: 1, connectionLimit: 100, memoryLimitMb: 1024 })).toEqual({
      max_connections: '120',
      shared_buffers: '256MB',
      effective_cache_size: '768MB',
      maintenance_work_mem: '64MB',
      work_mem: '2184kB',
      ...REPLICATION,
    });
    expect(
      tunedSettings({
        maxInstances: 1,
        connectionLimit: 100,
        memoryLimitMb: 1024,
        settings: { shared_buffers: '128MB' },
      }).shared_buffers,
    ).toBe('128MB');
    // A tiny limit keeps every value valid for Postgres.
    expect(tunedSettings({ maxInstances: 500, connectionLimit: 40, memoryLimitMb: 64 })).toMatchObject({
      shared_buffers: '16MB',
      work_mem: '64kB',
    });
  });

  it('makes every server a move source and target, sized for its moves, with the WAL a slot holds bounded', () => {
    expect(replicationSettings({ moves: 2, walKeepSizeMb: 4096 })).toEqual({
      wal_level: 'logical',
      max_replication_slots: '10',
      max_wal_senders: '10',
      max_logical_replication_workers: '8',
      max_worker_processes: '16',
      max_slot_wal_keep_size: '4096MB',
    });
    const bigger = replicationSettings({ moves: 10, walKeepSizeMb: 512 });
    expect(bigger.max_replication_slots).toBe('34');
    expect(bigger.max_slot_wal_keep_size).toBe('512MB');
    // Explicit settings still win (an operator's override).
    expect(
      tunedSettings({ maxInstances: 1, memoryLimitMb: null, settings: { max_wal_senders: '50' } })
        .max_wal_senders,
    ).toBe('50');
  });

  it('passes settings as one argument each and refuses what the driver owns', () => {
    expect(postgresArgs({ a: "x y'z" })).toEqual(['postgres', '-c', "a=x y'z"]);
    expect(() => validateSettings({ port: '1' })).toThrow(PermanentProvisionError);
    expect(() => validateSettings({ Data_Directory: '/x' })).toThrow(PermanentProvisionError);
    expect(() => validateSettings({ 'auto_explain.log_min_duration': '10' })).not.toThrow();
  });
});

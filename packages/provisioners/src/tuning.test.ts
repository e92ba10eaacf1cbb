import { describe, expect, it } from 'vitest';
import { PermanentProvisionError } from './provisioner';
import { maxConnectionsFor, postgresArgs, tunedSettings, validateSettings } from './tuning';

describe('tunedSettings', () => {
  it('sizes max_connections from every slot at the plan limit plus the platform, never under 100', () => {
    expect(maxConnectionsFor(50, 40)).toBe(2020);
    expect(maxConnectionsFor(1, 200)).toBe(220);
    expect(maxConnectionsFor(2, 5)).toBe(100);
    expect(tunedSettings({ maxInstances: 10, connectionLimit: 20, memoryLimitMb: null })).toEqual({
      max_connections: '220',
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

  it('passes settings as one argument each and refuses what the driver owns', () => {
    expect(postgresArgs({ a: "x y'z" })).toEqual(['postgres', '-c', "a=x y'z"]);
    expect(() => validateSettings({ port: '1' })).toThrow(PermanentProvisionError);
    expect(() => validateSettings({ Data_Directory: '/x' })).toThrow(PermanentProvisionError);
    expect(() => validateSettings({ 'auto_explain.log_min_duration': '10' })).not.toThrow();
  });
});

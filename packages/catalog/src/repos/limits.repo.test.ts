// The fleet limits' arithmetic (LimitsRepo's pure part): which limit is reached, how many more fit.
import { describe, expect, it } from 'vitest';
import { fleetLimitReached, fleetRoom } from './limits.repo';

const limits = { maxServers: 10, maxStarting: 3 };

describe('fleet limits', () => {
  it('names the limit that leaves no room, the ceiling first', () => {
    expect(fleetLimitReached({ servers: 9, starting: 2 }, limits)).toBeUndefined();
    expect(fleetLimitReached({ servers: 9, starting: 3 }, limits)).toBe('starting');
    expect(fleetLimitReached({ servers: 10, starting: 3 }, limits)).toBe('servers');
  });

  it('counts the room left under both limits, never below 0', () => {
    expect(fleetRoom({ servers: 0, starting: 0 }, limits)).toBe(3);
    expect(fleetRoom({ servers: 8, starting: 0 }, limits)).toBe(2);
    expect(fleetRoom({ servers: 12, starting: 5 }, limits)).toBe(0);
  });
});

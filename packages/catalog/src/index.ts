export * from './db';
export * from './migrate';
export * from './repos/audit.repo';
export * from './repos/plans.repo';
export * from './repos/reservations.repo';
export * from './repos/servers.repo';
export * from './repos/tenant-databases.repo';
export * from './types';

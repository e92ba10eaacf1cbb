export * from './client-tools';
export * from './connections';
export * from './health';
export * from './locks';
export * from './tenant.sql';
export * from './tenant-login';
export * from './tenants';

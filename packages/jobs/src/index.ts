export * from './catalog';
export * from './queues';

export * from './catalog';
export * from './consumer';
export * from './demand';
export * from './queues';
export * from './schedules';

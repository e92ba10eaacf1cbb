export * from './catalog';
export * from './consumer';
export * from './queues';
export * from './schedules';

export * from './consumer';
export * from './demand';
export * from './job-definitions';
export * from './queues';
export * from './schedules';

export * from './common';
export * from './database-service';

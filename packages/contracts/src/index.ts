export * from './api-keys';
export * from './common';
export * from './database-service';
export * from './database-service.client';
export * from './instance-service';
export * from './moves';
export * from './plans';
export * from './usage';

export * from './app-base';
export * from './auth';
export * from './errors';
export * from './request-context';

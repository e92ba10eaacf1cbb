export * from './app-base';
export * from './auth';
export * from './checked-tokens';
export * from './errors';
export * from './oidc';
export * from './rate-limits';
export * from './request-context';

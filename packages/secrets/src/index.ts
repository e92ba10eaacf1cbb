export * from './api-keys';
export * from './cipher';
export * from './passwords';
export * from './x509';

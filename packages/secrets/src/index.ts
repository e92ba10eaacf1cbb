export * from './cipher';
export * from './passwords';

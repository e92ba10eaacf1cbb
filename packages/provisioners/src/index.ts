export * from './local';
export * from './provisioner';
export * from './ready';

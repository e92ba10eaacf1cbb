export * from './dir-store';
export * from './open-store';
export * from './s3-store';
export * from './sealed-objects';
export * from './sealed-stream';
export * from './store';

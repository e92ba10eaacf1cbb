// The store a process's configuration names (@tenantdb/config's backupStoreSettings). The `_FILE`
// secrets are read here, once, when the store is made; their values go to the SDK and nowhere else.
import { readFileSync } from 'node:fs';
import { createDirStore } from './dir-store';
import { createS3Store } from './s3-store';
import type { BackupStore } from './store';

export interface BackupStoreConfig {
  TENANTDB_BACKUP_STORE: 'none' | 'dir' | 's3';
  TENANTDB_BACKUP_DIR?: string | undefined;
  TENANTDB_BACKUP_S3_BUCKET?: string | undefined;
  TENANTDB_BACKUP_S3_PREFIX: string;
  TENANTDB_BACKUP_S3_REGION: string;
  TENANTDB_BACKUP_S3_ENDPOINT?: string | undefined;
  TENANTDB_BACKUP_S3_FORCE_PATH_STYLE: boolean;
  TENANTDB_BACKUP_S3_ACCESS_KEY_ID?: string | undefined;
  TENANTDB_BACKUP_S3_ACCESS_KEY_ID_FILE?: string | undefined;
  TENANTDB_BACKUP_S3_SECRET_ACCESS_KEY?: string | undefined;
  TENANTDB_BACKUP_S3_SECRET_ACCESS_KEY_FILE?: string | undefined;
}

function secret(value: string | undefined, file: string | undefined, name: string): string | undefined {
  if (value) return value;
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    // The path is configuration, not a secret; the content never appears.
    throw new Error(`${name}_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** undefined when backups are off (TENANTDB_BACKUP_STORE=none). */
export function openBackupStore(config: BackupStoreConfig): BackupStore | undefined {
  switch (config.TENANTDB_BACKUP_STORE) {
    case 'none':
      return undefined;
    case 'dir':
      return createDirStore(config.TENANTDB_BACKUP_DIR!);
    case 's3': {
      const accessKeyId = secret(
        config.TENANTDB_BACKUP_S3_ACCESS_KEY_ID,
        config.TENANTDB_BACKUP_S3_ACCESS_KEY_ID_FILE,
        'TENANTDB_BACKUP_S3_ACCESS_KEY_ID',
      );
      const secretAccessKey = secret(
        config.TENANTDB_BACKUP_S3_SECRET_ACCESS_KEY,
        config.TENANTDB_BACKUP_S3_SECRET_ACCESS_KEY_FILE,
        'TENANTDB_BACKUP_S3_SECRET_ACCESS_KEY',
      );
      if (!!accessKeyId !== !!secretAccessKey)
        throw new Error(
          'the s3 backup store needs both an access key id and a secret access key, or neither',
        );
      return createS3Store({
        bucket: config.TENANTDB_BACKUP_S3_BUCKET!,
        prefix: config.TENANTDB_BACKUP_S3_PREFIX,
        region: config.TENANTDB_BACKUP_S3_REGION,
        forcePathStyle: config.TENANTDB_BACKUP_S3_FORCE_PATH_STYLE,
        ...(config.TENANTDB_BACKUP_S3_ENDPOINT ? { endpoint: config.TENANTDB_BACKUP_S3_ENDPOINT } : {}),
        ...(accessKeyId && secretAccessKey ? { credentials: { accessKeyId, secretAccessKey } } : {}),
      });
    }
  }
}

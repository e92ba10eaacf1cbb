// A directory as the backup store (`pnpm dev` keeps one under its state directory). A write goes
// to a hidden temporary name in the object's directory (one per key), is fsynced, then renamed
// into place (and the directory fsynced): a crash leaves either the whole object or a temporary
// file that list() never shows and the next write of the key replaces. One writer per key at a
// time (a backup's job holds its session lock).
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type BackupStore,
  checkKey,
  checkPrefix,
  type StoredObject,
  StoreNotFoundError,
  StoreUnavailableError,
} from './store';

const TEMP = '.partial-';

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function createDirStore(root: string): BackupStore {
  const pathOf = (key: string) => join(root, ...checkKey(key).split('/'));

  async function walk(dir: string, out: StoredObject[]): Promise<void> {
    const entries = await readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw err;
    });
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue; // temporaries of writes in progress
      const full = join(dir, entry.name);
      if (entry.isDirectory()) await walk(full, out);
      else if (entry.isFile()) {
        const s = await stat(full);
        out.push({ key: relative(root, full).split(sep).join('/'), bytes: s.size, modified: s.mtime });
      }
    }
  }

  return {
    kind: 'dir',
    async put(key, body) {
      const target = pathOf(key);
      await mkdir(dirname(target), { recursive: true });
      const temp = join(dirname(target), `${TEMP}${basename(target)}`);
      let bytes = 0;
      body.on('data', (d: Buffer) => {
        bytes += d.length;
      });
      try {
        await pipeline(body, createWriteStream(temp, { flags: 'w' }));
        await fsyncPath(temp);
        await rename(temp, target);
        await fsyncPath(dirname(target));
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
      return bytes;
    },
    async get(key) {
      const path = pathOf(key);
      const handle = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') throw new StoreNotFoundError(key);
        throw err;
      });
      return handle.createReadStream() as Readable;
    },
    async head(key) {
      const s = await stat(pathOf(key)).catch(() => undefined);
      return s?.isFile() ? { key, bytes: s.size, modified: s.mtime } : undefined;
    },
    async delete(key) {
      await rm(pathOf(key), { force: true });
    },
    async list(prefix) {
      checkPrefix(prefix);
      const out: StoredObject[] = [];
      // Walk only the deepest directory the prefix names in full.
      const base = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
      await walk(base ? join(root, ...base.split('/')) : root, out);
      return out.filter((o) => o.key.startsWith(prefix)).sort((a, b) => a.key.localeCompare(b.key));
    },
    async ping() {
      try {
        await mkdir(root, { recursive: true });
        await stat(root);
      } catch (err) {
        throw new StoreUnavailableError(`directory: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      }
    },
  };
}

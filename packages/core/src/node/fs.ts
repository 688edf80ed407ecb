import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { FileHost } from '../files.ts';

/** Bytes to write: one buffer, or chunks produced while writing (a throwing producer aborts the write). */
export type AtomicWriteSource = Uint8Array | Iterable<Uint8Array>;

function tempPath(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
}

// NOTE: fsync the directory so the rename itself survives a crash; best effort (not possible on Windows).
async function syncDir(path: string): Promise<void> {
  try {
    const dir = await open(dirname(path), 'r');
    await dir.sync().finally(() => dir.close());
  } catch {
    // the file is already in place; only durability across power loss is weaker
  }
}

function syncDirSync(path: string): void {
  try {
    const fd = openSync(dirname(path), 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // the file is already in place; only durability across power loss is weaker
  }
}

function chunks(src: AtomicWriteSource | AsyncIterable<Uint8Array>): Iterable<Uint8Array> | AsyncIterable<Uint8Array> {
  return src instanceof Uint8Array ? [src] : src;
}

/**
 * Writes `bytes` to `path` atomically: into `path.tmp-<pid>-<random>`, fsync,
 * then rename over `path` (and fsync the directory, best effort). On any failure (including a chunk producer that
 * throws) the temp file is removed and the previous file is left intact.
 *
 * @example await writeFileAtomic('run/ckpt.msgpack', encodeCheckpoint(state));
 */
export async function writeFileAtomic(path: string, bytes: AtomicWriteSource | AsyncIterable<Uint8Array>): Promise<void> {
  const tmp = tempPath(path);
  const fh = await open(tmp, 'wx');
  let closed = false;
  try {
    for await (const chunk of chunks(bytes)) {
      for (let off = 0; off < chunk.byteLength; ) {
        const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off);
        off += bytesWritten;
      }
    }
    await fh.sync();
    closed = true;
    await fh.close();
    await rename(tmp, path);
  } catch (err) {
    if (!closed) await fh.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await syncDir(path);
}

/**
 * Synchronous {@link writeFileAtomic}: temp file, fsync, rename; cleans up on failure.
 *
 * @example writeFileAtomicSync('adapter_model.safetensors', encodeSafetensors(tensors, { format: 'pt' }));
 */
export function writeFileAtomicSync(path: string, bytes: AtomicWriteSource): void {
  const tmp = tempPath(path);
  const fd = openSync(tmp, 'wx');
  let closed = false;
  try {
    for (const chunk of chunks(bytes) as Iterable<Uint8Array>) {
      for (let off = 0; off < chunk.byteLength; ) off += writeSync(fd, chunk, off, chunk.byteLength - off);
    }
    fsyncSync(fd);
    closed = true;
    closeSync(fd);
    renameSync(tmp, path);
  } catch (err) {
    if (!closed) {
      try {
        closeSync(fd);
      } catch {
        // already failing; the original error is the one to report
      }
    }
    rmSync(tmp, { force: true });
    throw err;
  }
  syncDirSync(path);
}

/** Node's file system as a {@link FileHost}: atomic writes, recursive mkdir. */
export const nodeFileHost: FileHost = {
  readFile: async (path) => {
    const b = await readFile(path);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  },
  writeFile: (path, bytes) => writeFileAtomic(path, bytes),
  mkdir: async (path) => {
    await mkdir(path, { recursive: true });
  },
  join: (...parts) => join(...parts),
};

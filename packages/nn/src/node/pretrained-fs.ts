/**
 * Local directories as model sources and sinks (Node only). Importing
 * `@lowrank/nn/node` registers both, so `fromPretrained('path/to/model')`
 * and `savePretrained('out/dir')` work with plain paths.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { MANIFEST_FILE, openFileSet, type FileSet } from '@lowrank/core/node';
import {
  checkFileName, registerSinkResolver, registerSourceResolver, type ModelSink, type ModelSource,
} from '../pretrained/source.ts';

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * The files of a local directory. Throws at once when `dir` is not a directory.
 * @example const src = directorySource('models/gpt2');
 */
export function directorySource(dir: string): ModelSource {
  const root = path.resolve(dir);
  let st;
  try {
    st = statSync(root);
  } catch {
    throw new Error(`${dir}: no such directory (expected a model directory with config.json and model.safetensors)`);
  }
  if (!st.isDirectory()) throw new Error(`${dir}: not a directory (expected a model directory with config.json and model.safetensors)`);
  const file = (name: string): string => {
    checkFileName(name);
    return path.join(root, name);
  };
  // A directory lowrank saved as a file set (adapters) is read as that set, so a save
  // killed between its renames still loads as one save, never a mix. One view per source.
  let set: Promise<FileSet | null> | undefined;
  /** The bytes of a file the set's manifest binds; undefined for any other file (read from disk). */
  const boundBytes = async (name: string): Promise<Uint8Array | undefined> => {
    set ??= existsSync(path.join(root, MANIFEST_FILE)) ? openFileSet(root) : Promise.resolve(null);
    const s = await set;
    checkFileName(name);
    return s?.bound.includes(name) ? s.read(name) : undefined;
  };
  return {
    describe: dir,
    read: async (name) => {
      try {
        const bound = await boundBytes(name);
        if (bound) return bound;
        return new Uint8Array(await readFile(file(name)));
      } catch (err) {
        if (isMissing(err)) return null;
        throw new Error(`${path.join(dir, name)}: ${(err as Error).message}`);
      }
    },
    readRange: async (name, start, end) => {
      const bound = await boundBytes(name);
      if (bound) return bound.slice(start, Math.min(end, bound.length));
      let fh;
      try {
        fh = await open(file(name), 'r');
      } catch (err) {
        if (isMissing(err)) return null;
        throw err;
      }
      try {
        const size = (await fh.stat()).size;
        const stop = Math.min(end, size);
        const out = new Uint8Array(Math.max(0, stop - start));
        let off = 0;
        while (off < out.length) {
          const { bytesRead } = await fh.read(out, off, out.length - off, start + off);
          if (bytesRead === 0) break;
          off += bytesRead;
        }
        return out.subarray(0, off);
      } finally {
        await fh.close();
      }
    },
    size: async (name) => {
      const bound = await boundBytes(name);
      if (bound) return bound.length;
      try {
        return (await stat(file(name))).size;
      } catch (err) {
        if (isMissing(err)) return null;
        throw err;
      }
    },
  };
}

/**
 * Writes into a directory (created if needed): each file goes to a temp
 * name, and `commit` renames them all into place (then removes the stale
 * files it is told about), so an interrupted save leaves the previous files.
 * @example await model.savePretrained(directorySink('out/merged'));
 */
export function directorySink(dir: string): ModelSink {
  const root = path.resolve(dir);
  const staged = new Map<string, string>();
  const tag = `${process.pid}-${randomBytes(6).toString('hex')}`;
  return {
    describe: dir,
    write: async (name, bytes) => {
      checkFileName(name);
      await mkdir(path.dirname(path.join(root, name)), { recursive: true });
      const tmp = path.join(root, `${name}.tmp-${tag}`);
      const fh = await open(tmp, 'w');
      try {
        for (let off = 0; off < bytes.length;) off += (await fh.write(bytes, off, bytes.length - off)).bytesWritten;
        await fh.sync();
      } finally {
        await fh.close();
      }
      staged.set(name, tmp);
    },
    commit: async (stale) => {
      for (const [name, tmp] of staged) await rename(tmp, path.join(root, name));
      if (stale) {
        for (const name of await readdir(root)) if (!staged.has(name) && stale(name)) await rm(path.join(root, name), { force: true });
      }
      staged.clear();
      try {
        const d = await open(root, 'r');
        await d.sync().finally(() => d.close());
      } catch {
        // directory fsync is best effort (not possible on every platform)
      }
    },
    abort: async () => {
      for (const tmp of staged.values()) await rm(tmp, { force: true }).catch(() => undefined);
      staged.clear();
    },
  };
}

/** A Hub id looks like `org/name`; anything else with separators, or starting with '.', '/' or '~', is a path. */
function looksLikePath(s: string): boolean {
  return path.isAbsolute(s) || s.startsWith('.') || s.startsWith('~') || s.includes('\\') || s.split('/').length > 2;
}

/** Registers the directory source and sink resolvers (idempotent). */
export function registerFileSystem(): void {
  registerSourceResolver('directory', (input) => {
    if (existsSync(input)) return directorySource(input);
    // A missing path that cannot be a Hub id gets the clear error now.
    if (looksLikePath(input)) return directorySource(input);
    return null;
  });
  registerSinkResolver('directory', (output) => directorySink(output));
}

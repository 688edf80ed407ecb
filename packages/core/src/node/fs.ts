import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
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
 * throws) the temp file is removed and the previous file is left intact. Temp files that killed
 * writes to the same path left behind (their process is gone) are removed first.
 *
 * @example await writeFileAtomic('run/ckpt.msgpack', encodeCheckpoint(state));
 */
export async function writeFileAtomic(path: string, bytes: AtomicWriteSource | AsyncIterable<Uint8Array>): Promise<void> {
  await removeStaleTemps(dirname(path), [basename(path)]);
  const tmp = tempPath(path);
  inFlight.add(tmp);
  try {
    await writeDurable(tmp, bytes);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  } finally {
    inFlight.delete(tmp);
  }
  await syncDir(path);
}

/** Writes a new file (fails if it exists) and fsyncs it; on failure the partial file is removed. */
async function writeDurable(path: string, bytes: AtomicWriteSource | AsyncIterable<Uint8Array>): Promise<void> {
  const fh = await open(path, 'wx');
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
  } catch (err) {
    if (!closed) await fh.close().catch(() => undefined);
    await rm(path, { force: true }).catch(() => undefined);
    throw err;
  }
}

/**
 * Synchronous {@link writeFileAtomic}: temp file, fsync, rename; cleans up on failure,
 * and first removes the temps that killed saves of this file left.
 *
 * @example writeFileAtomicSync('adapter_model.safetensors', encodeSafetensors(tensors, { format: 'pt' }));
 */
export function writeFileAtomicSync(path: string, bytes: AtomicWriteSource): void {
  removeStaleTempsSync(dirname(path), [basename(path)]);
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

/** Name of the manifest a multi-file save writes last, binding its files by size and SHA-256. */
export const MANIFEST_FILE = 'lowrank-manifest.json';

interface ManifestEntry {
  size: number;
  sha256: string;
  /** The temp name the new bytes were written under; present until a later save cleans up. */
  staged: string;
}

interface Manifest {
  format: 'lowrank-file-set';
  version: 1;
  files: Record<string, ManifestEntry>;
}

const TEMP_RE = /\.tmp-(\d+)-[0-9a-f]+$/;
const inFlight = new Set<string>();

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether `entry` in dir is a temp of one of `names` left by a killed save (its process is gone, or it is ours and idle). */
function isStaleTemp(dir: string, entry: string, names: readonly string[]): boolean {
  const m = TEMP_RE.exec(entry);
  if (!m || !names.some((n) => entry.startsWith(`${n}.tmp-`))) return false;
  const pid = Number(m[1]);
  return !inFlight.has(join(dir, entry)) && (pid === process.pid || !pidAlive(pid));
}

/**
 * Removes `<name>.tmp-<pid>-<hex>` files in dir left by saves that were killed:
 * their process is gone, or it is this one and no save of ours is writing them.
 */
export async function removeStaleTemps(dir: string, names: readonly string[]): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const e of entries.filter((x) => isStaleTemp(dir, x, names))) {
    await rm(join(dir, e), { force: true }).catch(() => undefined);
    removed.push(e);
  }
  return removed;
}

/** Synchronous {@link removeStaleTemps}, for {@link writeFileAtomicSync}. */
function removeStaleTempsSync(dir: string, names: readonly string[]): void {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const e of entries.filter((x) => isStaleTemp(dir, x, names))) {
    try {
      rmSync(join(dir, e), { force: true });
    } catch {
      // another process may have removed it first
    }
  }
}

async function readManifest(dir: string): Promise<Manifest | null> {
  const path = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message}); delete it to load the files as they are`);
  }
  const files = (m as Manifest | null)?.files;
  const ok = typeof m === 'object' && m !== null && (m as Manifest).format === 'lowrank-file-set' && typeof files === 'object' && files !== null &&
    Object.values(files).every((e) => typeof e === 'object' && e !== null && Number.isSafeInteger(e.size) && typeof e.sha256 === 'string' &&
      typeof e.staged === 'string' && TEMP_RE.test(e.staged) && !e.staged.includes('/') && !e.staged.includes('\\'));
  if (!ok) throw new Error(`${path}: not a lowrank file-set manifest; delete it to load the files as they are`);
  return m as Manifest;
}

async function readIfExists(path: string): Promise<Uint8Array | null> {
  try {
    const b = await readFile(path);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

const matches = (b: Uint8Array | null, e: ManifestEntry): b is Uint8Array => b !== null && b.byteLength === e.size && sha256(b) === e.sha256;

/**
 * Completes a save that was killed after its manifest was written: staged files
 * that match the manifest are renamed over their final names.
 */
async function rollForward(dir: string, manifest: Manifest): Promise<void> {
  for (const [name, e] of Object.entries(manifest.files)) {
    const final = join(dir, name);
    if (matches(await readIfExists(final), e)) continue;
    const staged = join(dir, e.staged);
    if (matches(await readIfExists(staged), e)) await rename(staged, final);
  }
}

/**
 * Writes several files into dir as one unit, so a reader (`openFileSet`) sees
 * the old set or the new set, never a mix, even if the process is killed at any
 * point: each file goes to a temp name (fsync), then a manifest binding every
 * file by size and SHA-256 (and its temp name) is written atomically, then the
 * temps are renamed into place. A reader that finds a final file not matching
 * the manifest takes the staged temp that does. Temp files of earlier killed
 * saves are removed first (after completing a save that got as far as its manifest).
 * Two processes saving into one directory at once is not supported.
 * @example await writeFileSet('out/peft', { 'adapter_config.json': cfg, 'adapter_model.safetensors': weights });
 */
export async function writeFileSet(dir: string, files: Readonly<Record<string, Uint8Array>>): Promise<void> {
  await mkdir(dir, { recursive: true });
  const names = Object.keys(files);
  for (const n of names) {
    if (n === MANIFEST_FILE || n.includes('/') || n.includes('\\') || TEMP_RE.test(n)) throw new Error(`writeFileSet: bad file name '${n}'`);
  }
  const old = await readManifest(dir).catch(() => null);
  if (old) await rollForward(dir, old);
  await removeStaleTemps(dir, [...new Set([...names, ...Object.keys(old?.files ?? {}), MANIFEST_FILE])]);
  const entries: Record<string, ManifestEntry> = {};
  const temps: [string, string][] = [];
  try {
    for (const n of names) {
      const tmp = tempPath(join(dir, n));
      inFlight.add(tmp);
      temps.push([tmp, join(dir, n)]);
      await writeDurable(tmp, files[n]);
      entries[n] = { size: files[n].byteLength, sha256: sha256(files[n]), staged: basename(tmp) };
    }
    const manifest: Manifest = { format: 'lowrank-file-set', version: 1, files: entries };
    await writeFileAtomic(join(dir, MANIFEST_FILE), new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`));
  } catch (err) {
    for (const [tmp] of temps) await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  } finally {
    for (const [tmp] of temps) inFlight.delete(tmp);
  }
  // From here the manifest names the new set: a crash below still loads it (from the staged temps).
  for (const [tmp, final] of temps) await rename(tmp, final);
  await syncDir(join(dir, MANIFEST_FILE));
}

/** A consistent view of a file set: each file's bytes, checked against the manifest when there is one. */
export interface FileSet {
  read(name: string): Promise<Uint8Array>;
  /** The names the manifest binds (empty without one): their bytes come from `read`, never from the file alone. */
  readonly bound: readonly string[];
}

/**
 * Opens dir for reading files that `writeFileSet` wrote together. Without a
 * manifest (files from PEFT or by hand) files are read as they are. With one,
 * a listed file whose final bytes do not match the manifest's size and SHA-256
 * but whose staged temp does is read from the temp: that is a save killed
 * between its renames, and the temp holds the new set's file. A final file that
 * matches nothing with no staged temp beside it was edited by hand or rewritten
 * by another tool (PEFT), and is read as it is: only our own crashes leave temps.
 * @example const set = await openFileSet('out/peft'); const cfg = await set.read('adapter_config.json');
 */
export async function openFileSet(dir: string): Promise<FileSet> {
  const manifest = await readManifest(dir);
  const plainRead = async (name: string): Promise<Uint8Array> => {
    const b = await readFile(join(dir, name));
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  };
  if (!manifest) return { read: plainRead, bound: [] };
  const resolved = new Map<string, Uint8Array>();
  for (const [name, e] of Object.entries(manifest.files)) {
    const final = await readIfExists(join(dir, name));
    if (matches(final, e)) {
      resolved.set(name, final);
      continue;
    }
    const staged = await readIfExists(join(dir, e.staged));
    if (matches(staged, e)) resolved.set(name, staged);
  }
  return { read: async (name) => resolved.get(name) ?? plainRead(name), bound: Object.keys(manifest.files) };
}

/** Node's file system as a {@link FileHost}: atomic writes, atomic multi-file sets, recursive mkdir. */
export const nodeFileHost: FileHost = {
  readFile: async (path) => {
    const b = await readFile(path);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  },
  writeFile: (path, bytes) => writeFileAtomic(path, bytes),
  writeFileSet: (dir, files) => writeFileSet(dir, files),
  openFileSet: (dir) => openFileSet(dir),
  mkdir: async (path) => {
    await mkdir(path, { recursive: true });
  },
  join: (...parts) => join(...parts),
};

/**
 * What path-based saving and loading needs from the host. The package entry
 * points stay browser-safe, so none is installed by default: importing
 * `@lowrank/core/node` (or `@lowrank/nn/node`, `@lowrank/lora/node`) installs
 * Node's file system. Browsers save to bytes instead (`encodeCheckpoint`,
 * `peft.toAdapterFiles()`), or install their own host.
 */
export interface FileHost {
  readFile(path: string): Promise<Uint8Array>;
  /** Atomic: the old file stays intact until the new one is complete. */
  writeFile(path: string, bytes: Uint8Array): Promise<void>;
  /**
   * Optional: writes several files into dir as one unit (a reader sees the old
   * set or the new set, even after a crash). Without it, files are written one by one.
   */
  writeFileSet?(dir: string, files: Readonly<Record<string, Uint8Array>>): Promise<void>;
  /** Optional: reads files of a set written by `writeFileSet`, checked to belong together. */
  openFileSet?(dir: string): Promise<{ read(name: string): Promise<Uint8Array> }>;
  /** Creates a directory and its parents (no error if it exists). */
  mkdir(path: string): Promise<void>;
  join(...parts: string[]): string;
}

let host: FileHost | null = null;

/** Installs (or, with null, removes) the file host path-based APIs use. @example setFileHost(myOpfsHost) */
export function setFileHost(h: FileHost | null): void {
  host = h;
}

/**
 * The installed file host; `caller` names the API in the error when none is.
 * @example await getFileHost('saveCheckpoint').writeFile(path, bytes)
 */
export function getFileHost(caller: string): FileHost {
  if (host) return host;
  throw new Error(
    `${caller}: saving or loading by path needs a file system; in Node add \`import '@lowrank/core/node'\` ` +
    '(or @lowrank/nn/node, @lowrank/lora/node), in a browser use the in-memory (Uint8Array) form of the API',
  );
}

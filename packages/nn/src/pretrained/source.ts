/**
 * Where a pre-trained model's files come from (a directory, a URL, bytes in
 * memory, a Hub id) and where `savePretrained` writes them. This file is
 * browser-safe: the file-system source and sink live in `../node/` and are
 * registered by `@lowrank/nn/node`.
 */

/** Files of a model (or adapter) directory, read by name (`config.json`, `model.safetensors`, ...). */
export interface ModelSource {
  /** Names the source in error messages (a path, a URL, 'in-memory files'). */
  describe: string;
  /** The whole file, or null when the source has no file of that name. */
  read(name: string): Promise<Uint8Array | null>;
  /**
   * Optional: bytes [start, end) of a file (end clipped to its size), or null
   * when it is missing; lets loaders read a safetensors header alone.
   */
  readRange?(name: string, start: number, end: number): Promise<Uint8Array | null>;
  /** Optional: the size of a file in bytes, or null when it is missing. */
  size?(name: string): Promise<number | null>;
}

/**
 * Where `savePretrained` writes files. `commit` makes them all visible at
 * once and removes the existing files `stale` names (weights of an earlier
 * save that this one did not overwrite); `abort` drops what was written.
 */
export interface ModelSink {
  describe: string;
  write(name: string, bytes: Uint8Array): Promise<void>;
  commit?(stale?: (name: string) => boolean): Promise<void>;
  abort?(): Promise<void>;
}

/** File name -> bytes. */
export type FileMap = Map<string, Uint8Array> | Record<string, Uint8Array>;

/** Anything `fromPretrained` accepts: a ModelSource, a file map, a base URL, or a string a resolver understands (a local path, a Hub id). */
export type SourceInput = ModelSource | FileMap | URL | string;

/** What `savePretrained` accepts: a sink, a Map to fill, or a string a sink resolver understands (a local directory). */
export type SinkInput = ModelSink | Map<string, Uint8Array> | string;

/** Turns a string into a source, or returns null when it is not its kind (e.g. not a Hub id). */
export type SourceResolver = (input: string) => ModelSource | null | Promise<ModelSource | null>;

/** Turns a string into a sink, or returns null. */
export type SinkResolver = (input: string) => ModelSink | null | Promise<ModelSink | null>;

interface Registered<R> {
  name: string;
  resolve: R;
}

const sourceResolvers: Registered<SourceResolver>[] = [];
const sinkResolvers: Registered<SinkResolver>[] = [];

/**
 * Adds (or replaces, by name) a resolver that `openSource` asks, in order of
 * registration, about every string input that is not an http(s) URL.
 * `@lowrank/nn/node` registers 'directory' (an existing local directory);
 * a Hub resolver registers 'hub' for `org/name` ids.
 * @example registerSourceResolver('hub', (id) => /^[\w.-]+\/[\w.-]+$/.test(id) ? hubSource(id) : null);
 */
export function registerSourceResolver(name: string, resolve: SourceResolver): void {
  const i = sourceResolvers.findIndex((r) => r.name === name);
  if (i >= 0) sourceResolvers[i] = { name, resolve };
  else sourceResolvers.push({ name, resolve });
}

/** Adds (or replaces, by name) a resolver that `openSink` asks about string inputs. */
export function registerSinkResolver(name: string, resolve: SinkResolver): void {
  const i = sinkResolvers.findIndex((r) => r.name === name);
  if (i >= 0) sinkResolvers[i] = { name, resolve };
  else sinkResolvers.push({ name, resolve });
}

/** Names of the registered source resolvers, in the order they are asked. */
export function sourceResolverNames(): string[] {
  return sourceResolvers.map((r) => r.name);
}

/**
 * A plain file name inside a model directory: no absolute paths, no `..`,
 * no backslashes or NUL (a file named by a hostile index must stay inside).
 */
export function checkFileName(name: string, what = 'file name'): void {
  const bad = typeof name !== 'string' || name === '' || name.startsWith('/') || name.includes('\\') || name.includes('\0')
    || /^[a-zA-Z]:/.test(name) || name.split('/').some((seg) => seg === '' || seg === '.' || seg === '..');
  if (bad) throw new Error(`${what} ${JSON.stringify(name)} is not a plain relative file name inside the model directory`);
}

function isModelSource(v: unknown): v is ModelSource {
  return typeof v === 'object' && v !== null && typeof (v as ModelSource).read === 'function' && !(v instanceof Map);
}

function isModelSink(v: unknown): v is ModelSink {
  return typeof v === 'object' && v !== null && typeof (v as ModelSink).write === 'function' && !(v instanceof Map);
}

/**
 * Files held in memory (a Map or a Record of name -> bytes).
 * @example const src = memorySource({ 'config.json': cfgBytes, 'model.safetensors': weights });
 */
export function memorySource(files: FileMap, describe = 'in-memory files'): ModelSource {
  const get = (name: string): Uint8Array | null => {
    checkFileName(name);
    if (files instanceof Map) return files.get(name) ?? null;
    return Object.hasOwn(files, name) ? files[name] : null;
  };
  return {
    describe,
    read: async (name) => get(name),
    readRange: async (name, start, end) => get(name)?.subarray(start, end) ?? null,
    size: async (name) => get(name)?.length ?? null,
  };
}

/**
 * Files under a base URL, fetched with `fetch` (works in browsers and Node 20).
 * A 404 is a missing file; other HTTP errors throw naming the URL.
 * @example const src = urlSource('https://example.com/models/gpt2/');
 */
export function urlSource(base: string | URL, init: RequestInit = {}): ModelSource {
  const root = new URL(String(base).endsWith('/') ? String(base) : `${String(base)}/`);
  const urlOf = (name: string): string => {
    checkFileName(name);
    return new URL(name.split('/').map(encodeURIComponent).join('/'), root).href;
  };
  const get = async (name: string, headers: Record<string, string> = {}): Promise<Response | null> => {
    const url = urlOf(name);
    let res: Response;
    try {
      res = await fetch(url, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), ...headers } });
    } catch (err) {
      throw new Error(`fetching ${url} failed: ${(err as Error).message}`);
    }
    if (res.status === 404) return null;
    if (!res.ok) throw new Error(`fetching ${url}: HTTP ${res.status} ${res.statusText}`);
    return res;
  };
  return {
    describe: root.href,
    read: async (name) => {
      const res = await get(name);
      return res ? new Uint8Array(await res.arrayBuffer()) : null;
    },
    readRange: async (name, start, end) => {
      if (end <= start) return new Uint8Array(0);
      const res = await get(name, { Range: `bytes=${start}-${end - 1}` });
      if (!res) return null;
      const bytes = new Uint8Array(await res.arrayBuffer());
      // A server that ignores Range answers 200 with the whole file.
      return res.status === 206 ? bytes : bytes.subarray(start, end);
    },
  };
}

/**
 * A sink that fills a Map (in memory; `commit` is a no-op because writes land directly).
 * @example const files = new Map(); await model.savePretrained(memorySink(files));
 */
export function memorySink(files: Map<string, Uint8Array>, describe = 'in-memory files'): ModelSink {
  const staged = new Map<string, Uint8Array>();
  return {
    describe,
    write: async (name, bytes) => {
      checkFileName(name);
      staged.set(name, bytes);
    },
    commit: async (stale) => {
      if (stale) for (const k of [...files.keys()]) if (!staged.has(k) && stale(k)) files.delete(k);
      for (const [k, v] of staged) files.set(k, v);
      staged.clear();
    },
    abort: async () => staged.clear(),
  };
}

/**
 * A ModelSource for any accepted input: a ModelSource as is, a Map/Record of
 * bytes, an http(s) URL, or a string that a registered resolver claims
 * (local directories with `@lowrank/nn/node`, Hub ids with the hub resolver).
 * @example const src = await openSource(new Map([['config.json', bytes]]));
 */
export async function openSource(input: SourceInput): Promise<ModelSource> {
  if (input instanceof URL) return urlSource(input);
  if (isModelSource(input)) return input;
  if (input instanceof Map) return memorySource(input);
  if (typeof input === 'string') {
    if (/^https?:\/\//i.test(input)) return urlSource(input);
    for (const r of sourceResolvers) {
      const src = await r.resolve(input);
      if (src) return src;
    }
    const known = sourceResolvers.map((r) => r.name);
    throw new Error(
      `openSource: cannot open ${JSON.stringify(input)}: ` +
      (known.length
        ? `no registered resolver (${known.join(', ')}) accepts it — expected an existing model directory, an http(s) URL, or a Hub id`
        : "it is not an http(s) URL; for a local directory import '@lowrank/nn/node' first (it registers the file-system source), or pass a ModelSource / file map"),
    );
  }
  if (typeof input === 'object' && input !== null && !Array.isArray(input)) {
    const rec = input as Record<string, unknown>;
    const bad = Object.entries(rec).find(([, v]) => !(v instanceof Uint8Array));
    if (bad) throw new Error(`openSource: file map entry '${bad[0]}' must be a Uint8Array of the file's bytes`);
    return memorySource(rec as Record<string, Uint8Array>);
  }
  throw new Error(`openSource: expected a ModelSource, a file map, a URL or a path, got ${input === null ? 'null' : typeof input}`);
}

/**
 * A ModelSink for any accepted output: a sink as is, a Map to fill, or a
 * string a registered sink resolver claims (a directory, with `@lowrank/nn/node`).
 * @example const sink = await openSink(new Map());
 */
export async function openSink(output: SinkInput): Promise<ModelSink> {
  if (output instanceof Map) return memorySink(output);
  if (isModelSink(output)) return output;
  if (typeof output === 'string') {
    for (const r of sinkResolvers) {
      const sink = await r.resolve(output);
      if (sink) return sink;
    }
    throw new Error(
      `savePretrained: cannot write to ${JSON.stringify(output)}: ` +
      (sinkResolvers.length ? 'no registered sink accepts it' : "for a local directory import '@lowrank/nn/node' first, or pass a Map / ModelSink"),
    );
  }
  throw new Error(`savePretrained: expected a directory path, a Map or a ModelSink, got ${output === null ? 'null' : typeof output}`);
}

/**
 * Reads a file that must exist; the error names the source, the file and what it should hold.
 * @example const bytes = await requireFile(src, 'config.json', "the model's Hugging Face config");
 */
export async function requireFile(src: ModelSource, name: string, expected: string): Promise<Uint8Array> {
  const bytes = await src.read(name);
  if (!bytes) throw new Error(`${src.describe}: ${name} not found (expected ${expected})`);
  return bytes;
}

const MAX_JSON_BYTES = 64 * 1024 * 1024;

/**
 * Parses a JSON file's bytes; errors name the file. Files over 64 MiB are refused before parsing.
 * @example const cfg = parseJsonFile(bytes, `${src.describe}/config.json`);
 */
export function parseJsonFile(bytes: Uint8Array, where: string): unknown {
  if (bytes.length > MAX_JSON_BYTES) throw new Error(`${where}: ${bytes.length} bytes is too large for a JSON config (limit ${MAX_JSON_BYTES})`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`${where}: not valid UTF-8`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${where}: not valid JSON (${(err as Error).message})`);
  }
}

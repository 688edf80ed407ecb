/** Where a model's files come from: `read` returns a file's bytes, or null when it is absent. */
export interface ModelSource {
  /** For messages: a directory, URL, Hub id... */
  describe: string;
  read(name: string): Promise<Uint8Array | null>;
}

/** What `fromPretrained` accepts: a source, a file map, a base URL, or a string a resolver knows. */
export type SourceSpec = ModelSource | ReadonlyMap<string, Uint8Array> | Readonly<Record<string, Uint8Array>> | URL | string;

/** Turns a string (a directory, a Hub id) into a source, or returns null when it is not one of its kind. */
export type SourceResolver = (spec: string) => ModelSource | null | Promise<ModelSource | null>;

const resolvers: SourceResolver[] = [];

/**
 * Adds a resolver for string sources; later registrations are tried first. Node's
 * directory and Hub resolvers register themselves from `@lowrank/nn/node`.
 *
 * @example registerSourceResolver((s) => (s.startsWith('mem:') ? memorySource : null))
 */
export function registerSourceResolver(resolver: SourceResolver): void {
  resolvers.unshift(resolver);
}

/** @example await resolveSource(new Map([['config.json', bytes]]), 'fromPretrained') */
export async function resolveSource(spec: SourceSpec, op: string): Promise<ModelSource> {
  if (isModelSource(spec)) return spec;
  if (spec instanceof URL) return urlSource(spec.href);
  if (spec instanceof Map) return mapSource(spec);
  if (typeof spec === 'string') {
    if (/^https?:\/\//.test(spec)) return urlSource(spec);
    for (const resolve of resolvers) {
      const found = await resolve(spec);
      if (found) return found;
    }
    throw new Error(
      `${op}: cannot open ${JSON.stringify(spec)}: not an http(s) URL, and no resolver took it ` +
        '(directories and Hub ids need Node: import "@lowrank/nn/node")',
    );
  }
  if (typeof spec === 'object' && spec !== null) return mapSource(new Map(Object.entries(spec)));
  throw new Error(`${op}: expected a directory, URL, Hub id, file map or ModelSource, got ${typeof spec}`);
}

function isModelSource(x: unknown): x is ModelSource {
  return typeof x === 'object' && x !== null && typeof (x as ModelSource).read === 'function';
}

function mapSource(files: ReadonlyMap<string, Uint8Array>): ModelSource {
  return { describe: '<in-memory files>', read: async (name) => files.get(name) ?? null };
}

function urlSource(base: string): ModelSource {
  const root = base.endsWith('/') ? base : `${base}/`;
  return {
    describe: root.slice(0, -1),
    async read(name) {
      const res = await fetch(new URL(name, root));
      if (res.status === 404) return null;
      if (!res.ok) throw new Error(`fetch ${root}${name}: HTTP ${res.status} ${res.statusText}`);
      return new Uint8Array(await res.arrayBuffer());
    },
  };
}

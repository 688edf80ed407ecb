// Stand-in for issue 10a's pretrained/source.ts (same names and behaviour, a subset) until it
// lands on main; then this file goes and its importers import ./source.ts.

/** Files of a model directory, read by name; null when absent. */
export interface ModelSource {
  describe: string;
  read(name: string): Promise<Uint8Array | null>;
}

/** Anything `fromPretrained` accepts. */
export type SourceInput = ModelSource | Map<string, Uint8Array> | Record<string, Uint8Array> | URL | string;

/** Turns a string into a source, or returns null when it is not its kind. */
export type SourceResolver = (input: string) => ModelSource | null | Promise<ModelSource | null>;

const resolvers: { name: string; resolve: SourceResolver }[] = [];

/** Adds (or replaces, by name) a resolver for string inputs. @example registerSourceResolver('hub', resolveHubId) */
export function registerSourceResolver(name: string, resolve: SourceResolver): void {
  const i = resolvers.findIndex((r) => r.name === name);
  if (i >= 0) resolvers[i] = { name, resolve };
  else resolvers.push({ name, resolve });
}

/** @example const src = await openSource(new Map([['config.json', bytes]])) */
export async function openSource(input: SourceInput): Promise<ModelSource> {
  if (input instanceof URL) return urlSource(input.href);
  if (typeof input === 'object' && input !== null && typeof (input as ModelSource).read === 'function') return input as ModelSource;
  if (input instanceof Map) return mapSource(input);
  if (typeof input === 'string') {
    if (/^https?:\/\//i.test(input)) return urlSource(input);
    for (const r of resolvers) {
      const src = await r.resolve(input);
      if (src) return src;
    }
    throw new Error(`openSource: cannot open ${JSON.stringify(input)}: not an http(s) URL and no resolver accepts it`);
  }
  if (typeof input === 'object' && input !== null) return mapSource(new Map(Object.entries(input as Record<string, Uint8Array>)));
  throw new Error(`openSource: expected a ModelSource, a file map, a URL or a path, got ${typeof input}`);
}

function mapSource(files: ReadonlyMap<string, Uint8Array>): ModelSource {
  return { describe: 'in-memory files', read: async (name) => files.get(name) ?? null };
}

function urlSource(base: string): ModelSource {
  const root = base.endsWith('/') ? base : `${base}/`;
  return {
    describe: root,
    async read(name) {
      const res = await fetch(new URL(name, root));
      if (res.status === 404) return null;
      if (!res.ok) throw new Error(`fetching ${root}${name}: HTTP ${res.status} ${res.statusText}`);
      return new Uint8Array(await res.arrayBuffer());
    },
  };
}

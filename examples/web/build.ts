// Bundles the page's TypeScript (main thread + training worker) with esbuild.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

export const WEB_DIR = path.dirname(fileURLToPath(import.meta.url));

/** One built file: its URL path under /dist/ and its bytes. */
export interface BuiltFile {
  name: string;
  bytes: Uint8Array;
}

export interface BuildResult {
  files: BuiltFile[];
  /** Bytes of all the page's JavaScript (minified). */
  jsBytes: number;
  /** What a visit loads before any choice: main.js, worker.js and the chunks they import statically. */
  startBytes: number;
  /** Chunks fetched only on demand (dynamic imports: gpu.js when the gpu backend is chosen), by file name. */
  lazy: Record<string, number>;
}

/**
 * Builds dist/main.js, dist/worker.js and their chunks in memory. The bundle must resolve
 * without Node built-ins: a `node:*` import reaching it is a build error.
 */
export async function buildPage(opts: { minify?: boolean } = {}): Promise<BuildResult> {
  const result = await esbuild.build({
    entryPoints: { main: path.join(WEB_DIR, 'src/main.ts'), worker: path.join(WEB_DIR, 'src/worker.ts') },
    bundle: true,
    format: 'esm',
    splitting: true, // gpu.js (a dynamic import in core) becomes its own chunk, fetched only when the gpu backend is chosen
    platform: 'browser',
    target: 'es2022',
    minify: opts.minify ?? true,
    sourcemap: 'linked',
    outdir: path.join(WEB_DIR, 'dist'),
    write: false,
    logLevel: 'silent',
    legalComments: 'eof',
    metafile: true,
  });
  const files = result.outputFiles.map((f) => ({ name: path.basename(f.path), bytes: f.contents }));
  const size = new Map(files.map((f) => [f.name, f.bytes.length]));
  const js = files.filter((f) => f.name.endsWith('.js'));
  const start = staticClosure(result.metafile, ['main.js', 'worker.js']);
  const lazy: Record<string, number> = {};
  for (const f of js) if (!start.has(f.name)) lazy[f.name] = f.bytes.length;
  return {
    files,
    jsBytes: js.reduce((n, f) => n + f.bytes.length, 0),
    startBytes: [...start].reduce((n, name) => n + (size.get(name) ?? 0), 0),
    lazy,
  };
}

/** Output files reachable from the entries through static imports only. */
function staticClosure(meta: esbuild.Metafile, entries: readonly string[]): Set<string> {
  const byName = new Map(Object.entries(meta.outputs).map(([p, o]) => [path.basename(p), o]));
  const seen = new Set<string>();
  const visit = (name: string): void => {
    if (seen.has(name)) return;
    seen.add(name);
    for (const imp of byName.get(name)?.imports ?? []) if (imp.kind === 'import-statement') visit(path.basename(imp.path));
  };
  entries.forEach(visit);
  return seen;
}

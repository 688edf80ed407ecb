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
  /** Bytes of the JavaScript the page loads (main + worker, minified). */
  jsBytes: number;
}

/**
 * Builds dist/main.js and dist/worker.js in memory. The bundle must resolve
 * without Node built-ins: a `node:*` import reaching it is a build error.
 */
export async function buildPage(opts: { minify?: boolean } = {}): Promise<BuildResult> {
  const result = await esbuild.build({
    entryPoints: { main: path.join(WEB_DIR, 'src/main.ts'), worker: path.join(WEB_DIR, 'src/worker.ts') },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: opts.minify ?? true,
    sourcemap: 'linked',
    outdir: path.join(WEB_DIR, 'dist'),
    write: false,
    logLevel: 'silent',
    legalComments: 'eof',
  });
  const files = result.outputFiles.map((f) => ({ name: path.basename(f.path), bytes: f.contents }));
  const jsBytes = files.filter((f) => f.name.endsWith('.js')).reduce((n, f) => n + f.bytes.length, 0);
  return { files, jsBytes };
}

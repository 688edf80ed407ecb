// A bare page around one bundled script, in the Chromium the page test drives
// (same binary and flags, same cross-origin isolation headers): for browser
// checks and benchmarks that need the engine in a page but not the app's UI.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as esbuild from 'esbuild';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS } from './driver.ts';
import { ISOLATION_HEADERS } from './server.ts';

export interface BundlePage {
  page: Page;
  /** Uncaught errors of the page. */
  errors: string[];
  close(): Promise<void>;
}

/** Bundles `entries` (name -> .ts file) for the browser into memory, as /<name>.js. */
async function bundle(entries: Record<string, string>): Promise<Map<string, Uint8Array>> {
  const result = await esbuild.build({
    entryPoints: entries, bundle: true, format: 'esm', splitting: true, platform: 'browser', target: 'es2022',
    outdir: path.join(tmpdir(), 'lowrank-bundle-page'), write: false, logLevel: 'silent',
  });
  return new Map(result.outputFiles.map((f) => [`/${path.basename(f.path)}`, f.contents]));
}

function serve(files: Map<string, Uint8Array>): Promise<{ url: string; server: http.Server }> {
  const server = http.createServer((req, res) => {
    const body = files.get(new URL(req.url ?? '/', 'http://localhost').pathname);
    if (!body) {
      res.writeHead(404, ISOLATION_HEADERS).end();
      return;
    }
    const type = req.url?.endsWith('.js') ? 'text/javascript; charset=utf-8' : 'text/html; charset=utf-8';
    res.writeHead(200, { ...ISOLATION_HEADERS, 'Content-Type': type }).end(body);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server }));
  });
}

/**
 * Opens Chromium on a page that loads `/<main>.js` (the first entry) as a module.
 * `gc: true` exposes `gc()` to scripts and makes `performance.memory` precise;
 * `webgl: false` runs without WebGL, as `PageDriver.open` does.
 */
export async function openBundlePage(entries: Record<string, string>, opts: { gc?: boolean; webgl?: boolean } = {}): Promise<BundlePage> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it with 'apt-get install -y chromium', or point LOWRANK_CHROMIUM at a Chromium binary`);
  }
  const files = await bundle(entries);
  const main = Object.keys(entries)[0];
  files.set('/', new TextEncoder().encode(`<!doctype html><meta charset="utf-8"><title>${main}</title><script type="module" src="/${main}.js"></script>`));
  const { url, server } = await serve(files);
  const base = opts.webgl === false
    ? [...CHROMIUM_ARGS.filter((a) => a !== '--enable-unsafe-swiftshader'), '--disable-gpu', '--disable-software-rasterizer']
    : CHROMIUM_ARGS;
  const args = opts.gc ? [...base, '--js-flags=--expose-gc', '--enable-precise-memory-info'] : base;
  const userDir = mkdtempSync(path.join(tmpdir(), 'lowrank-chromium-'));
  let context: BrowserContext | null = null;
  try {
    context = await chromium.launchPersistentContext(userDir, { executablePath: CHROMIUM, headless: true, args });
    const page = context.pages()[0] ?? (await context.newPage());
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    const ctx = context;
    return {
      page, errors,
      close: async () => {
        await ctx.close();
        server.close();
        server.closeAllConnections();
        rmSync(userDir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await context?.close();
    server.close();
    rmSync(userDir, { recursive: true, force: true });
    throw e;
  }
}

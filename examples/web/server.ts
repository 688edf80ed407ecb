// `npm run web`: builds the page and serves it on 127.0.0.1 with the
// cross-origin isolation headers (COOP/COEP) that SharedArrayBuffer and
// worker threads need. No framework: node:http and a map of files in memory.
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { loadBrown } from '@lowrank/nn/node';
import { WEB_DIR, buildPage, type BuildResult } from './build.ts';

/** The two built-in texts: Brown corpus genres (the base pre-trains on one, fine-tunes on the other). */
export const BUILTIN_TEXTS = { base: 'cn', tune: 'cr' } as const;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/** Headers on every response: cross-origin isolated, never cached (the page is rebuilt at each start). */
export const ISOLATION_HEADERS: Record<string, string> = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

export interface WebServer {
  url: string;
  /** Bytes of the page's JavaScript (main + worker bundles). */
  jsBytes: number;
  /** The bundles it serves under /dist/. */
  built: BuildResult;
  close(): Promise<void>;
}

async function collectFiles(): Promise<{ files: Map<string, Uint8Array>; built: BuildResult }> {
  const files = new Map<string, Uint8Array>();
  for (const name of ['index.html', 'style.css']) {
    files.set(`/${name}`, await readFile(path.join(WEB_DIR, name)));
  }
  files.set('/', files.get('/index.html') as Uint8Array);
  const built = await buildPage();
  for (const f of built.files) files.set(`/dist/${f.name}`, f.bytes);
  const enc = new TextEncoder();
  for (const [which, genre] of Object.entries(BUILTIN_TEXTS)) {
    files.set(`/builtin/${which}.txt`, enc.encode(loadBrown({ genres: [genre] }).text));
  }
  return { files, built };
}

/** Builds the page and listens on host:port (port 0: any free port). */
export async function startServer(opts: { port?: number; host?: string } = {}): Promise<WebServer> {
  const { files, built } = await collectFiles();
  const server = http.createServer((req, res) => {
    const urlPath = new URL(req.url ?? '/', 'http://localhost').pathname;
    const body = files.get(urlPath);
    const headers = { ...ISOLATION_HEADERS };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...headers, Allow: 'GET, HEAD' }).end();
      return;
    }
    if (!body) {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' }).end(`not found: ${urlPath}\n`);
      return;
    }
    const type = TYPES[path.extname(urlPath)] ?? TYPES['.html'];
    res.writeHead(200, { ...headers, 'Content-Type': type, 'Content-Length': String(body.length) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8080, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}/`,
    jsBytes: built.jsBytes,
    built,
    close: () => new Promise<void>((resolve, reject) => {
      server.close((e) => (e ? reject(e) : resolve()));
      server.closeAllConnections(); // keep-alive sockets would hold close() for seconds
    }),
  };
}

function portArg(argv: readonly string[]): number {
  const i = argv.indexOf('--port');
  const raw = i >= 0 ? argv[i + 1] : process.env.PORT;
  if (raw === undefined) return 8080;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`web server: --port must be an integer in [0, 65535], got '${raw}'`);
  return n;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.join(WEB_DIR, 'server.ts')) {
  const s = await startServer({ port: portArg(process.argv.slice(2)) });
  const kib = (n: number): string => `${(n / 1024).toFixed(0)} KiB`;
  console.log(`lowrank web page: ${s.url}  (JavaScript: ${kib(s.built.startBytes)} at start, ${kib(s.jsBytes)} with the on-demand chunks; Ctrl-C stops)`);
}

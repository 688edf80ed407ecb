/**
 * A stand-in for the Hugging Face Hub on 127.0.0.1: serves `${fixturesDir}/hf/<name>` as the
 * model repo `<org>/<name>` in the Hub's URL layout, with the API routes `@huggingface/hub`
 * calls (`/api/models/<repo>/revision/<rev>`, `/api/models/<repo>/paths-info/<rev>`) and
 * ranged `/<repo>/resolve/<rev>/<file>` downloads.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export const FIXTURE_COMMIT = 'a1b2c3d4e5f60718293a4b5c6d7e8f9001122334';

export interface HubRequest {
  method: string;
  url: string;
  range?: string;
}

export interface FakeHub {
  endpoint: string;
  requests: HubRequest[];
  /** Cut the next file download after this many body bytes (a dropped connection). */
  cutNextDownloadAfter: number | null;
  close(): Promise<void>;
}

const gitOid = (bytes: Uint8Array) => createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const isLfs = (name: string) => /\.(safetensors|bin|pt|gguf)$/.test(name);

/** Starts the server; `extra` adds files to a repo (by fixture folder name) beside the fixture's own. */
export async function startFakeHub(hfDir: string, extra: Record<string, Record<string, Uint8Array>> = {}): Promise<FakeHub> {
  const fileOf = (name: string, file: string): Uint8Array | null => {
    const added = extra[name]?.[file];
    if (added) return added;
    const p = path.join(hfDir, name, file);
    return !file.split('/').includes('..') && existsSync(p) && statSync(p).isFile() ? readFileSync(p) : null;
  };
  const repoExists = (name: string) => /^[\w.-]+$/.test(name) && (existsSync(path.join(hfDir, name)) || name in extra);
  const revisionOk = (rev: string) => rev === 'main' || rev === FIXTURE_COMMIT;

  const hub: FakeHub = {
    endpoint: '',
    requests: [],
    cutNextDownloadAfter: null,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };

  const notFound = (res: ServerResponse, code: string) => {
    res.writeHead(404, { 'X-Error-Code': code, 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: code }));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    hub.requests.push({ method: req.method ?? '', url: url.pathname, range: req.headers.range });
    let m = /^\/api\/models\/([\w.-]+)\/([\w.-]+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (m && req.method === 'GET') {
      const [, org, name, rev] = m;
      if (!repoExists(name)) return notFound(res, 'RepoNotFound');
      if (!revisionOk(decodeURIComponent(rev))) return notFound(res, 'RevisionNotFound');
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const siblings = [...readdirSync(path.join(hfDir, name)), ...Object.keys(extra[name] ?? {})].map((rfilename) => ({ rfilename }));
      return res.end(JSON.stringify({ _id: `fixture-${name}`, id: `${org}/${name}`, sha: FIXTURE_COMMIT, private: false, gated: false, downloads: 0, likes: 0, lastModified: '2026-01-01T00:00:00.000Z', siblings }));
    }
    m = /^\/api\/models\/([\w.-]+)\/([\w.-]+)\/paths-info\/([^/]+)$/.exec(url.pathname);
    if (m && req.method === 'POST') {
      const [, , name, rev] = m;
      if (!repoExists(name)) return notFound(res, 'RepoNotFound');
      if (!revisionOk(decodeURIComponent(rev))) return notFound(res, 'RevisionNotFound');
      let body = '';
      for await (const chunk of req) body += chunk;
      const { paths } = JSON.parse(body) as { paths: string[] };
      const infos = paths.flatMap((p) => {
        const bytes = fileOf(name, p);
        if (!bytes) return [];
        const lfs = isLfs(p) ? { oid: sha256(bytes), size: bytes.length, pointerSize: 134 } : undefined;
        return [{ type: 'file', path: p, oid: gitOid(bytes), size: bytes.length, ...(lfs && { lfs }) }];
      });
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return res.end(JSON.stringify(infos));
    }
    m = /^\/([\w.-]+)\/([\w.-]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (m && (req.method === 'GET' || req.method === 'HEAD')) {
      const [, , name, rev, file] = m;
      if (!repoExists(name)) return notFound(res, 'RepoNotFound');
      if (!revisionOk(decodeURIComponent(rev))) return notFound(res, 'RevisionNotFound');
      const bytes = fileOf(name, decodeURIComponent(file));
      if (!bytes) return notFound(res, 'EntryNotFound');
      return sendFile(req, res, bytes, isLfs(file) ? sha256(bytes) : gitOid(bytes));
    }
    notFound(res, 'NoSuchRoute');
  };

  const sendFile = (req: IncomingMessage, res: ServerResponse, bytes: Uint8Array, etag: string) => {
    const headers = { ETag: `"${etag}"`, 'X-Repo-Commit': FIXTURE_COMMIT, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' };
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    let start = 0;
    let end = bytes.length;
    if (range) {
      start = Number(range[1]);
      end = range[2] === '' ? bytes.length : Math.min(bytes.length, Number(range[2]) + 1);
      res.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${end - 1}/${bytes.length}`, 'Content-Length': end - start });
    } else {
      res.writeHead(200, { ...headers, 'Content-Length': bytes.length });
    }
    if (req.method === 'HEAD') return res.end();
    const body = bytes.subarray(start, end);
    const cut = hub.cutNextDownloadAfter;
    // Probes (Range: bytes=0-0) are not downloads.
    if (cut !== null && body.length > 1) {
      hub.cutNextDownloadAfter = null;
      // A graceful close (FIN) after the bytes: destroy() may reset the connection and the
      // client's kernel then drops bytes it had received, so the partial file would be shorter.
      res.write(body.subarray(0, cut), () => res.socket?.end());
      return;
    }
    res.end(body);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      res.writeHead(500);
      res.end(err.message);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  hub.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return hub;
}

/** Wraps global fetch so that any request to an address other than 127.0.0.1 fails the test. */
export function guardFetch(): () => void {
  const original = globalThis.fetch;
  globalThis.fetch = ((input: string | URL | Request, init?: RequestInit) => {
    const href = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const host = new URL(href).hostname;
    if (host !== '127.0.0.1') throw new Error(`test tried to reach ${href}: only 127.0.0.1 is allowed`);
    return original(input, init);
  }) as typeof fetch;
  return () => {
    globalThis.fetch = original;
  };
}

import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, readFile, rename, rm, stat, symlink, copyFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { downloadFile, modelInfo, pathsInfo } from '@huggingface/hub';
import { checkFileName, type ModelSource } from '../pretrained/source.ts';

/** One progress report of a file download. */
export interface DownloadProgress {
  repo: string;
  file: string;
  /** Bytes on disk so far (a resumed download starts above 0). */
  loaded: number;
  total: number;
  done: boolean;
}

export interface HubOptions {
  /** Branch, tag or commit (default `'main'`). */
  revision?: string;
  /** The hub cache folder (default `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`). */
  cacheDir?: string;
  /** The Hub's address (default `$HF_ENDPOINT`, else `https://huggingface.co`). */
  endpoint?: string;
  /** Read only the cache, never the network (default: `HF_HUB_OFFLINE=1`). */
  offline?: boolean;
  /** Access token for gated/private repos (default `$HF_TOKEN`). */
  token?: string;
  /** Download progress; default a one-line bar on stderr (a line per finished file when it is not a TTY). */
  onProgress?: ((p: DownloadProgress) => void) | false;
  /** The fetch to use (tests, proxies). */
  fetch?: typeof fetch;
}

const COMMIT = /^[0-9a-f]{40}$/;
const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** True for strings shaped like a Hub model id (`org/name`). @example isHubId('openai-community/gpt2') // true */
export function isHubId(spec: string): boolean {
  return REPO_ID.test(spec) && !spec.includes('..');
}

/** The hub cache folder the Python tools also use. @example hubCacheDir() // '/home/me/.cache/huggingface/hub' */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  const home = env.HF_HOME ?? path.join(env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'), 'huggingface');
  return path.join(home, 'hub');
}

function envOffline(env: NodeJS.ProcessEnv): boolean {
  const v = (env.HF_HUB_OFFLINE ?? '').toLowerCase();
  return v === '1' || v === 'true' || v === 'yes' || v === 'on';
}

/**
 * A Hub model repository as a `ModelSource`, through a cache laid out as huggingface_hub's
 * (`models--org--name/{blobs,snapshots/<commit>,refs/<revision>}`, so Python and lowrank share
 * it). Files are downloaded once through `@huggingface/hub`, resumed from `blobs/<etag>.incomplete`
 * and checked against their hash; offline, only the cache is read and a file not in it is an
 * error naming it.
 *
 * @example const src = hubSource('openai-community/gpt2'); await src.read('config.json')
 */
export function hubSource(repo: string, options: HubOptions = {}): ModelSource {
  if (!isHubId(repo)) throw new Error(`hubSource: ${JSON.stringify(repo)} is not a Hub model id of the form 'org/name'`);
  const env = process.env;
  const revision = options.revision ?? 'main';
  const cacheDir = options.cacheDir ?? hubCacheDir(env);
  const endpoint = (options.endpoint ?? env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  const accessToken = options.token ?? env.HF_TOKEN ?? undefined;
  const progress = options.onProgress === false ? null : (options.onProgress ?? defaultProgress());
  const repoDir = path.join(cacheDir, `models--${repo.split('/').join('--')}`);
  const hub = { repo: { type: 'model' as const, name: repo }, hubUrl: endpoint, accessToken, fetch: options.fetch };
  let offline = options.offline ?? envOffline(env);
  let commitPromise: Promise<string> | undefined;

  const describe = `${repo}@${revision}`;
  const notCached = (what: string) =>
    new Error(
      `hubSource: ${describe}: ${what} is not in the cache (${repoDir}) and offline mode ` +
        '(HF_HUB_OFFLINE=1 or { offline: true }) forbids downloading it; run once online, or unset HF_HUB_OFFLINE',
    );

  async function resolveCommit(): Promise<string> {
    if (COMMIT.test(revision)) return revision;
    const refFile = path.join(repoDir, 'refs', revision);
    const cachedRef = async () => (await readFile(refFile, 'utf8').catch(() => '')).trim();
    if (offline) {
      const sha = await cachedRef();
      if (!COMMIT.test(sha)) throw notCached(`revision '${revision}' (refs/${revision})`);
      return sha;
    }
    let sha: string;
    try {
      sha = (await modelInfo({ ...hub, name: repo, revision, additionalFields: ['sha'] })).sha;
    } catch (err) {
      // Unreachable Hub (no network): use the cache as huggingface_hub does.
      const fallback = isNetworkError(err) ? await cachedRef() : '';
      if (!COMMIT.test(fallback)) throw new Error(`hubSource: ${describe}: cannot reach ${endpoint}: ${(err as Error).message}`);
      offline = true;
      return fallback;
    }
    if (!COMMIT.test(sha)) throw new Error(`hubSource: ${describe}: ${endpoint} answered commit ${JSON.stringify(sha)}`);
    if ((await cachedRef()) !== sha) await writeAtomic(refFile, sha);
    return sha;
  }

  async function read(name: string): Promise<Uint8Array | null> {
    checkFileName(name, `hubSource: ${describe}: file name`);
    commitPromise ??= resolveCommit();
    let commit: string;
    try {
      commit = await commitPromise;
    } catch (err) {
      commitPromise = undefined;
      throw err;
    }
    const pointer = path.join(repoDir, 'snapshots', commit, name);
    if (await exists(pointer)) return readBytes(pointer);
    const absentMarker = path.join(repoDir, '.no_exist', commit, name);
    if (await exists(absentMarker)) return null;
    if (offline) throw notCached(name);

    const [info] = await pathsInfo({ ...hub, paths: [name], revision: commit });
    if (info === undefined || info.type !== 'file') {
      await writeAtomic(absentMarker, '');
      return null;
    }
    const etag = info.lfs?.oid ?? info.oid;
    const size = info.lfs?.size ?? info.size;
    if (!etag) throw new Error(`hubSource: ${describe}: ${endpoint} gave no oid for ${name}`);
    const blob = path.join(repoDir, 'blobs', etag);
    if (!(await exists(blob))) await download(name, commit, blob, { etag, size, lfs: info.lfs !== undefined });
    await linkPointer(blob, pointer);
    return readBytes(pointer);
  }

  async function download(name: string, commit: string, blob: string, want: { etag: string; size: number; lfs: boolean }) {
    await mkdir(path.dirname(blob), { recursive: true });
    const partial = `${blob}.incomplete`;
    for (let attempt = 0; ; attempt++) {
      const have = await stat(partial).then((s) => s.size, () => 0);
      const remote = await downloadFile({ ...hub, path: name, revision: commit });
      if (remote === null) throw new Error(`hubSource: ${describe}: ${name} vanished from ${endpoint} during the download`);
      const start = have <= want.size ? have : 0;
      if (start === 0 && have > 0) await rm(partial, { force: true });
      let loaded = start;
      const report = (done: boolean) => progress?.({ repo, file: name, loaded, total: want.size, done });
      report(false);
      if (start < want.size) {
        const body = Readable.fromWeb((start > 0 ? remote.slice(start) : remote).stream() as NodeReadableStream);
        body.on('data', (chunk: Buffer) => {
          loaded += chunk.length;
          report(false);
        });
        await pipeline(body, createWriteStream(partial, { flags: start > 0 ? 'a' : 'w' }));
      }
      const got = await hashFile(partial, want.lfs ? 'sha256' : 'git-sha1');
      if (got === want.etag) {
        await rename(partial, blob);
        report(true);
        return;
      }
      await rm(partial, { force: true });
      // A resumed file that does not hash right is retried once from zero.
      if (attempt > 0 || start === 0) {
        throw new Error(`hubSource: ${describe}: ${name} downloaded with hash ${got}, expected ${want.etag}`);
      }
    }
  }

  return { describe, read };
}

function isNetworkError(err: unknown): boolean {
  const e = err as { name?: string; cause?: { code?: string } };
  return e?.name === 'TypeError' || typeof e?.cause?.code === 'string';
}

async function readBytes(file: string): Promise<Uint8Array> {
  const buf = await readFile(file);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}

async function writeAtomic(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

// snapshots/<commit>/<name> -> ../../blobs/<etag>, relative as huggingface_hub makes it; a copy
// where the file system has no symlinks.
async function linkPointer(blob: string, pointer: string): Promise<void> {
  await mkdir(path.dirname(pointer), { recursive: true });
  if (await lstat(pointer).then(() => true, () => false)) await rm(pointer, { force: true });
  try {
    await symlink(path.relative(path.dirname(pointer), blob), pointer);
  } catch {
    await copyFile(blob, pointer);
  }
}

async function hashFile(file: string, kind: 'sha256' | 'git-sha1'): Promise<string> {
  const hash = createHash(kind === 'sha256' ? 'sha256' : 'sha1');
  // Git's blob id: sha1 of "blob <size>\0" + content.
  if (kind === 'git-sha1') hash.update(`blob ${(await stat(file)).size}\0`);
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function defaultProgress(): (p: DownloadProgress) => void {
  const mib = (n: number) => (n / 2 ** 20).toFixed(1);
  // Not a terminal (logs, CI): one line per finished file.
  if (process.stderr.isTTY !== true) {
    return (p) => {
      if (p.done) process.stderr.write(`downloaded ${p.repo}/${p.file} (${mib(p.total)} MiB)\n`);
    };
  }
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (!p.done && now - last < 100) return;
    last = now;
    const pct = p.total > 0 ? Math.floor((100 * p.loaded) / p.total) : 100;
    const bar = '#'.repeat(Math.round(pct / 5)).padEnd(20, '.');
    process.stderr.write(`\r\x1b[2K${p.file} [${bar}] ${pct}% ${mib(p.loaded)}/${mib(p.total)} MiB${p.done ? '\n' : ''}`);
  };
}

import assert from 'node:assert/strict';
import { existsSync, lstatSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdtemp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AutoTokenizer } from '@lowrank/nn';
import { hubCacheDir, hubSource, isHubId, type DownloadProgress } from '@lowrank/nn/node';
import { fixturesDir } from '../fixtures-dir.ts';
import { FIXTURE_COMMIT, guardFetch, startFakeHub, type FakeHub } from './hub-server.ts';
import { charTokenizerFiles } from './tiny-tokenizer.ts';

const hfDir = path.join(fixturesDir, 'hf');
const MODEL = 'gpt2-tiny';
const REPO = `lowrank-fixtures/${MODEL}`;
const fixtureFile = (name: string) => readFileSync(path.join(hfDir, MODEL, name));
const config = JSON.parse(fixtureFile('config.json').toString()) as { vocab_size: number; eos_token_id: number };

describe('Hub ids through a cache in the Hub layout (local server on 127.0.0.1)', () => {
  let hub: FakeHub;
  let restoreFetch: () => void;
  let root: string;
  const tokenizerFiles = Object.fromEntries(charTokenizerFiles(config));

  before(async () => {
    restoreFetch = guardFetch();
    hub = await startFakeHub(hfDir, { [MODEL]: tokenizerFiles });
    root = await mkdtemp(path.join(tmpdir(), 'lowrank-hub-'));
  });
  after(async () => {
    await hub.close();
    restoreFetch();
    await rm(root, { recursive: true, force: true });
  });

  const fresh = async (name: string) => {
    const dir = path.join(root, name);
    await mkdir(dir);
    return dir;
  };
  const opts = (cacheDir: string, extra: object = {}) => ({ endpoint: hub.endpoint, cacheDir, onProgress: false as const, ...extra });

  it('downloads into models--org--name/{blobs,snapshots/<commit>,refs/main}, with progress', async () => {
    const cacheDir = await fresh('layout');
    const events: DownloadProgress[] = [];
    const src = hubSource(REPO, opts(cacheDir, { onProgress: (p: DownloadProgress) => events.push({ ...p }) }));
    assert.equal(src.describe, `${REPO}@main`);
    const weights = await src.read('model.safetensors');
    assert.deepEqual(weights, new Uint8Array(fixtureFile('model.safetensors')));
    assert.deepEqual(await src.read('config.json'), new Uint8Array(fixtureFile('config.json')));

    const repoDir = path.join(cacheDir, `models--lowrank-fixtures--${MODEL}`);
    assert.equal(readFileSync(path.join(repoDir, 'refs/main'), 'utf8'), FIXTURE_COMMIT);
    const pointer = path.join(repoDir, 'snapshots', FIXTURE_COMMIT, 'model.safetensors');
    assert.ok(lstatSync(pointer).isSymbolicLink());
    assert.match(readlinkSync(pointer), /^\.\.\/\.\.\/blobs\/[0-9a-f]{64}$/, 'LFS files are stored under their sha256');
    assert.match(readlinkSync(path.join(repoDir, 'snapshots', FIXTURE_COMMIT, 'config.json')), /^\.\.\/\.\.\/blobs\/[0-9a-f]{40}$/);
    const blobs = await readdir(path.join(repoDir, 'blobs'));
    assert.equal(blobs.length, 2);
    assert.ok(!blobs.some((b) => b.endsWith('.incomplete')));

    const done = events.filter((e) => e.done);
    assert.deepEqual(done.map((e) => e.file), ['model.safetensors', 'config.json']);
    assert.equal(done[0].loaded, weights!.length);
    assert.equal(done[0].total, weights!.length);
    assert.ok(events.every((e) => e.repo === REPO && e.loaded <= e.total));
  });

  it('serves cached files without downloading again; a missing file is null and remembered', async () => {
    const cacheDir = await fresh('cached');
    await hubSource(REPO, opts(cacheDir)).read('config.json');
    const before = hub.requests.length;
    const again = hubSource(REPO, opts(cacheDir));
    assert.deepEqual(await again.read('config.json'), new Uint8Array(fixtureFile('config.json')));
    const downloads = hub.requests.slice(before).filter((r) => r.url.includes('/resolve/'));
    assert.equal(downloads.length, 0, 'a cached file is read from disk');

    assert.equal(await again.read('special_tokens_map.json'), null);
    const marker = path.join(cacheDir, `models--lowrank-fixtures--${MODEL}`, '.no_exist', FIXTURE_COMMIT, 'special_tokens_map.json');
    assert.ok(existsSync(marker), 'huggingface_hub-style .no_exist marker');
    const n = hub.requests.length;
    assert.equal(await again.read('special_tokens_map.json'), null);
    assert.equal(hub.requests.length, n, 'the marker answers without the network');
  });

  it('works offline from the cache, and names the file that is not cached', async () => {
    const cacheDir = await fresh('offline');
    await hubSource(REPO, opts(cacheDir)).read('config.json');
    await hubSource(REPO, opts(cacheDir)).read('nope.bin');
    const n = hub.requests.length;
    const offline = hubSource(REPO, opts(cacheDir, { offline: true }));
    assert.deepEqual(await offline.read('config.json'), new Uint8Array(fixtureFile('config.json')));
    assert.equal(await offline.read('nope.bin'), null, 'known-absent files stay absent offline');
    await assert.rejects(offline.read('model.safetensors'), (err: Error) => {
      assert.match(err.message, /lowrank-fixtures\/gpt2-tiny@main: model\.safetensors is not in the cache/);
      assert.match(err.message, /HF_HUB_OFFLINE/);
      return true;
    });
    await assert.rejects(hubSource(REPO, opts(cacheDir, { offline: true, revision: 'v2' })).read('config.json'), /revision 'v2' \(refs\/v2\) is not in the cache/);
    assert.equal(hub.requests.length, n, 'offline sends nothing');
  });

  it('resumes a download cut off mid-file (Range from the bytes on disk)', async () => {
    const cacheDir = await fresh('resume');
    const size = fixtureFile('model.safetensors').length;
    const cut = Math.floor(size / 3);
    hub.cutNextDownloadAfter = cut;
    const src = hubSource(REPO, opts(cacheDir));
    await assert.rejects(src.read('model.safetensors'));
    const blobDir = path.join(cacheDir, `models--lowrank-fixtures--${MODEL}`, 'blobs');
    const [partial] = (await readdir(blobDir)).filter((f) => f.endsWith('.incomplete'));
    assert.ok(partial, 'the partial download is kept');
    assert.equal(statSync(path.join(blobDir, partial)).size, cut);

    const n = hub.requests.length;
    assert.deepEqual(await hubSource(REPO, opts(cacheDir)).read('model.safetensors'), new Uint8Array(fixtureFile('model.safetensors')));
    const ranges = hub.requests.slice(n).filter((r) => r.url.endsWith('/model.safetensors') && r.range !== 'bytes=0-0');
    assert.deepEqual(ranges.map((r) => r.range), [`bytes=${cut}-${size - 1}`]);
    assert.deepEqual((await readdir(blobDir)).filter((f) => f.endsWith('.incomplete')), []);
  });

  it('a corrupt partial file is detected by its hash and downloaded again from zero', async () => {
    const cacheDir = await fresh('corrupt');
    const bytes = fixtureFile('model.safetensors');
    const src = hubSource(REPO, opts(cacheDir));
    await src.read('config.json');
    const blobDir = path.join(cacheDir, `models--lowrank-fixtures--${MODEL}`, 'blobs');
    const { createHash } = await import('node:crypto');
    const etag = createHash('sha256').update(bytes).digest('hex');
    const wrong = Buffer.from(bytes.subarray(0, 100));
    wrong[10] ^= 0xff;
    await writeFile(path.join(blobDir, `${etag}.incomplete`), wrong);
    assert.deepEqual(await src.read('model.safetensors'), new Uint8Array(bytes));
  });

  it('HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE; AutoTokenizer.fromPretrained takes the Hub id', async () => {
    const home = await fresh('hf-home');
    const saved = { ...process.env };
    try {
      process.env.HF_ENDPOINT = hub.endpoint;
      process.env.HF_HOME = home;
      delete process.env.HF_HUB_CACHE;
      delete process.env.HF_HUB_OFFLINE;
      assert.equal(hubCacheDir(), path.join(home, 'hub'));
      const tok = await AutoTokenizer.fromPretrained(REPO);
      assert.equal(tok.vocabSize, config.vocab_size);
      assert.equal(tok.eosTokenId, config.eos_token_id);
      assert.equal(tok.decode(tok.encode('Hello, hub!')), 'Hello, hub!');
      const snapshot = path.join(home, 'hub', `models--lowrank-fixtures--${MODEL}`, 'snapshots', FIXTURE_COMMIT);
      assert.ok(existsSync(path.join(snapshot, 'tokenizer.json')));

      process.env.HF_HUB_OFFLINE = '1';
      process.env.HF_ENDPOINT = 'http://127.0.0.1:9'; // nothing listens: offline must not try
      const n = hub.requests.length;
      const again = await AutoTokenizer.fromPretrained(REPO);
      assert.deepEqual(again.encode('Hello'), tok.encode('Hello'));
      assert.equal(hub.requests.length, n);
    } finally {
      for (const k of ['HF_ENDPOINT', 'HF_HOME', 'HF_HUB_OFFLINE', 'HF_HUB_CACHE']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  });

  it('rejects bad ids, file names and unknown repos with clear errors', async () => {
    const cacheDir = await fresh('errors');
    assert.ok(isHubId('openai-community/gpt2') && !isHubId('./models/gpt2') && !isHubId('a/b/c'));
    assert.throws(() => hubSource('not a repo'), /not a Hub model id/);
    await assert.rejects(hubSource(REPO, opts(cacheDir)).read('../config.json'), /not a plain relative file name/);
    await assert.rejects(hubSource('lowrank-fixtures/no-such-model', opts(cacheDir)).read('config.json'), /no-such-model@main/);
  });
});

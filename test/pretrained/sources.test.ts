/**
 * Model sources and sinks: a base URL served on 127.0.0.1 (with and without
 * Range support), shard reads (each shard read whole once, headers by range),
 * an interrupted directory save leaving the previous checkpoint, and the
 * resolver extension point that Hub ids plug into.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { noGrad, tensor } from '@lowrank/core';
import {
  AutoModelForCausalLM, memorySource, openSource, registerSourceResolver, sourceResolverNames, type ModelSink, type ModelSource,
} from '@lowrank/nn';
import { directorySink } from '@lowrank/nn/node';
import { assertClose, assertSameState, hfDir, hfFixtures } from './helpers.ts';

const fixtures = hfFixtures();
const root = mkdtempSync(path.join(tmpdir(), 'lowrank-sources-'));
after(() => rmSync(root, { recursive: true, force: true }));

describe('a base URL (fetch)', () => {
  let server: Server;
  let base = '';
  const seen: { url: string; range?: string }[] = [];
  let honourRange = true;
  before(async () => {
    server = createServer((req, res) => {
      const url = decodeURIComponent(req.url ?? '/');
      seen.push({ url, range: req.headers.range });
      const file = path.join(hfDir, url);
      if (!file.startsWith(hfDir) || !existsSync(file) || url.endsWith('/')) {
        res.writeHead(404).end();
        return;
      }
      const bytes = readFileSync(file);
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (m && honourRange) {
        const [s, e] = [Number(m[1]), Math.min(Number(m[2]), bytes.length - 1)];
        res.writeHead(206, { 'content-range': `bytes ${s}-${e}/${bytes.length}` }).end(bytes.subarray(s, e + 1));
      } else {
        res.writeHead(200).end(bytes);
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  for (const fx of fixtures.slice(0, 2)) {
    test(`${fx.name} from ${'http://127.0.0.1/...'} equals the local load (with and without Range support)`, async () => {
      const local = await AutoModelForCausalLM.fromPretrained(fx.dir);
      for (const range of [true, false]) {
        honourRange = range;
        seen.length = 0;
        const remote = await AutoModelForCausalLM.fromPretrained(`${base}/${fx.name}/`);
        assertSameState(local, remote, `${fx.name} over http (range ${range})`);
        assert.ok(seen.some((r) => r.range), 'the header is asked for by range');
      }
      const ids = tensor(fx.expected.inputIds.data, { shape: fx.expected.inputIds.shape, dtype: 'int32' });
      const remote = await AutoModelForCausalLM.fromPretrained(new URL(`${base}/${fx.name}`));
      assertClose(noGrad(() => remote.forward(ids)).logits.dataSync(), fx.expected.logits.data, `${fx.name} logits over http`);
    });
  }

  test('a missing file is reported with the URL and what was expected', async () => {
    await assert.rejects(AutoModelForCausalLM.fromPretrained(`${base}/no-such-model/`), /no-such-model\/: config\.json not found \(expected the model's Hugging Face config/);
  });
});

describe('shards', () => {
  test('each shard is read whole once; headers come from range reads first', async () => {
    const fx = fixtures[0];
    const model = await AutoModelForCausalLM.fromPretrained(fx.dir);
    const files = new Map<string, Uint8Array>();
    await model.savePretrained(files, { maxShardSize: 2048 });
    const inner = memorySource(files);
    const log: string[] = [];
    const src: ModelSource = {
      describe: 'logged',
      read: async (n) => (log.push(`read ${n}`), inner.read(n)),
      readRange: async (n, s, e) => (log.push(`range ${n}`), inner.readRange!(n, s, e)),
      size: async (n) => inner.size!(n),
    };
    assertSameState(model, await AutoModelForCausalLM.fromPretrained(src), 'sharded load');
    const shards = [...files.keys()].filter((k) => /^model-\d+/.test(k));
    assert.ok(shards.length > 2);
    for (const s of shards) assert.equal(log.filter((l) => l === `read ${s}`).length, 1, `${s} read whole once`);
    const firstWhole = log.findIndex((l) => l.startsWith('read model-'));
    const lastRange = log.map((l) => l.startsWith('range model-')).lastIndexOf(true);
    assert.ok(lastRange < firstWhole, 'every header is checked before the first shard is loaded');
  });
});

describe('directory saves', () => {
  test('an interrupted save leaves the previous checkpoint and no temp files', async () => {
    const fx = fixtures[0];
    const model = await AutoModelForCausalLM.fromPretrained(fx.dir);
    const dir = path.join(root, 'atomic');
    await model.savePretrained(dir);
    const before = new Map(readdirSync(dir).map((f) => [f, readFileSync(path.join(dir, f))]));
    const real = directorySink(dir);
    let writes = 0;
    const failing: ModelSink = {
      describe: dir,
      write: async (n, b) => {
        if (++writes === 2) throw new Error('disk full (simulated)');
        await real.write(n, b);
      },
      commit: real.commit,
      abort: real.abort,
    };
    await assert.rejects(model.savePretrained(failing, { maxShardSize: 2048 }), /disk full/);
    assert.deepEqual(readdirSync(dir).sort(), [...before.keys()].sort(), 'no temp files, no new shards');
    for (const [f, b] of before) assert.ok(readFileSync(path.join(dir, f)).equals(b), `${f} unchanged`);
    // A sharded save over an unsharded one removes the stale model.safetensors.
    await model.savePretrained(dir, { maxShardSize: 2048 });
    assert.ok(!existsSync(path.join(dir, 'model.safetensors')) && existsSync(path.join(dir, 'model.safetensors.index.json')));
    assertSameState(model, await AutoModelForCausalLM.fromPretrained(dir), 'resaved');
  });
});

describe('resolvers', () => {
  test('a registered resolver claims strings (org/name goes to the hub one); the directory resolver comes first', async () => {
    const fx = fixtures[0];
    registerSourceResolver('test-ids', (s) => (s === 'acme:tiny' ? memorySource({}, 'acme:tiny (test resolver)') : null));
    assert.deepEqual(sourceResolverNames(), ['directory', 'hub', 'test-ids']);
    assert.equal((await openSource('acme/tiny')).describe, 'acme/tiny@main', 'a Hub id (nothing is fetched until a read)');
    const src = await openSource('acme:tiny');
    assert.equal(src.describe, 'acme:tiny (test resolver)');
    await assert.rejects(AutoModelForCausalLM.fromPretrained('acme:tiny'), /acme:tiny \(test resolver\): config\.json not found/);
    await assert.rejects(openSource('acme:other'), /no registered resolver \(directory, hub, test-ids\) accepts it/);
    assert.equal((await openSource(fx.dir)).describe, fx.dir);
  });
});

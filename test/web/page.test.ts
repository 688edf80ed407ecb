// The web page's Node-side pieces, fast enough for npm test: the bundle builds
// for the browser, the server sends the isolation headers, and the recipe's
// files round-trip and reject bad input clearly. The page itself runs in
// Chromium in test/browser/page.browser.ts (npm run test:browser).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { encodeSafetensors } from '@lowrank/core';
import { CharTokenizer } from '@lowrank/nn';
import { ISOLATION_HEADERS, startServer, type WebServer } from '../../examples/web/server.ts';
import {
  configFor, decodeBase, encodeBase, encodeText, hostTensors, initModel, loadPeft, logitsOf, loraRun, pageLora, peftFiles,
  probeIds, type BaseModel,
} from '../../examples/web/src/recipe.ts';
import type { PeftModel } from '@lowrank/lora';
import type { TransformerLM } from '@lowrank/nn';

const TEXT = 'the quick brown fox jumps over the lazy dog. '.repeat(20);

function smallBase(): BaseModel {
  const tok = CharTokenizer.fromText(TEXT);
  const config = configFor(tok.vocabSize, { nLayer: 1, nHead: 2, nEmbd: 16, blockSize: 8 });
  return { config, vocab: [...tok.vocab], tensors: hostTensors(initModel(config, 1)), source: 'test' };
}

describe('web page bundle and server', () => {
  let server: WebServer;
  before(async () => {
    server = await startServer({ port: 0 });
  });
  after(() => server.close());

  test('the page builds for the browser; the main thread bundle leaves the library to the worker', async () => {
    const built = server.built;
    const size = (name: string): number => built.files.find((f) => f.name === name)?.bytes.length ?? -1;
    assert.ok(size('worker.js') > 0 && size('main.js') > 0, built.files.map((f) => f.name).join(', '));
    assert.ok(size('main.js') * 10 < size('worker.js'), `main.js ${size('main.js')} B, worker.js ${size('worker.js')} B`);
    // gpu.js is a chunk of its own, fetched only when the gpu backend is chosen.
    const lazy = Object.keys(built.lazy);
    assert.ok(lazy.some((n) => n.startsWith('gpu-browser')), `lazy chunks: ${lazy.join(', ')}`);
    assert.ok(built.startBytes >= size('main.js') + size('worker.js') && built.startBytes < built.jsBytes);
  });

  test('every response is cross-origin isolated; unknown paths are 404, writes 405', async () => {
    for (const p of ['', 'dist/worker.js', 'builtin/tune.txt', 'missing']) {
      const res = await fetch(new URL(p, server.url));
      for (const [k, v] of Object.entries(ISOLATION_HEADERS)) assert.equal(res.headers.get(k), v, `${p || '/'}: ${k}`);
      assert.equal(res.status, p === 'missing' ? 404 : 200, p);
      await res.arrayBuffer();
    }
    assert.match((await fetch(new URL('dist/main.js', server.url))).headers.get('content-type') ?? '', /text\/javascript/);
    assert.equal((await fetch(server.url, { method: 'POST' })).status, 405);
    assert.ok(server.url.startsWith('http://127.0.0.1:'));
  });
});

describe('web page recipe', () => {
  test('a base model file round-trips exactly', () => {
    const base = smallBase();
    const back = decodeBase(encodeBase(base), 'base.safetensors');
    assert.deepEqual(back.config, base.config);
    assert.deepEqual(back.vocab, base.vocab);
    assert.equal(back.source, 'test');
    for (const [k, t] of Object.entries(base.tensors)) assert.deepEqual(back.tensors[k].data, t.data, k);
  });

  test('broken or foreign model files fail with the file name and the reason', () => {
    assert.throws(() => decodeBase(new TextEncoder().encode('not a model'), 'broken.safetensors'), /^Error: broken\.safetensors: not a readable safetensors file/);
    const plain = encodeSafetensors({ w: { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) } });
    assert.throws(() => decodeBase(plain, 'other.safetensors'), /other\.safetensors: a safetensors file, but not a base model saved by this page/);
    const base = smallBase();
    const bytes = encodeBase({ ...base, tensors: { ...base.tensors, 'norm.weight': { dtype: 'float32', shape: [3], data: new Float32Array(3) } } });
    assert.throws(() => decodeBase(bytes, 'bad.safetensors'), /bad\.safetensors: the weights do not fit the config: .*norm\.weight/s);
  });

  test('unknown characters and too short texts are clear errors; skipping drops them', () => {
    const tok = CharTokenizer.fromText(TEXT);
    assert.throws(() => encodeText(tok, `${TEXT}\u00e9`, 8, false), /unknown character "\u00e9" \(U\+00E9\)/);
    assert.equal(encodeText(tok, `${TEXT}\u00e9`, 8, true).length, TEXT.length);
    assert.throws(() => encodeText(tok, 'the fox', 8, false), /7 usable characters; training needs at least 10/);
  });

  test('a fine-tuned adapter saved as PEFT files reloads onto the base with the same logits', async () => {
    const base = smallBase();
    const ids = encodeText(new CharTokenizer(base.vocab), TEXT, base.config.blockSize, false);
    const run = loraRun(base, ids, { steps: 3, batchSize: 2, lr: 0.05, seed: 4 }, pageLora(2), 'cpu');
    while (!run.done) run.step();
    const peft = run.model as PeftModel<TransformerLM>;
    const files = peftFiles(peft);
    const json = JSON.parse(new TextDecoder().decode(files.config)) as Record<string, unknown>;
    assert.deepEqual([json.peft_type, json.r, json.lora_alpha, json.target_modules], ['LORA', 2, 4, ['q_proj', 'v_proj']]);
    const probe = probeIds(ids, base.config.blockSize);
    const trained = logitsOf(peft, probe, base.config.blockSize);
    const reloaded = logitsOf(await loadPeft(base, files, 'cpu'), probe, base.config.blockSize);
    assert.deepEqual(reloaded, trained);
    assert.notDeepEqual(trained, logitsOf(await loadPeft(base, peftFiles(loraRun(base, ids, { steps: 0, batchSize: 2, lr: 0, seed: 4 }, pageLora(2), 'cpu').model as PeftModel<TransformerLM>), 'cpu'), probe, base.config.blockSize));
    await assert.rejects(loadPeft(base, { ...files, config: new TextEncoder().encode('{') }, 'cpu'), /adapter_config\.json/);
    await assert.rejects(loadPeft(base, { ...files, weights: files.weights.subarray(0, 20) }, 'cpu'), /adapter_model\.safetensors/);
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { manualSeed, memory, randint, tensor, zeros } from '@lowrank/core';
import {
  AdamW, KVCache, SGD, TransformerLM, gpt2Small, gptTiny, llama7b, llamaTiny, trainStep, w2,
} from '@lowrank/nn';

describe('TransformerLM presets on meta', () => {
  test('gpt2-small: 124,439,808 parameters (tied head once), built in < 1 s', () => {
    const t0 = performance.now();
    const model = new TransformerLM(gpt2Small(), { backend: 'meta' });
    const ms = performance.now() - t0;
    assert.equal(model.numParameters(), 124_439_808);
    assert.equal(model.lmHead.weight, model.embedTokens.weight);
    assert.ok(ms < 1000, `built in ${ms} ms`);
  });

  test('llama-7b: 6,738,415,616 parameters, built in < 1 s', () => {
    const t0 = performance.now();
    const model = new TransformerLM(llama7b(), { backend: 'meta' });
    const ms = performance.now() - t0;
    assert.equal(model.numParameters(), 6_738_415_616);
    assert.ok(ms < 1000, `built in ${ms} ms`);
  });

  test('a forward pass on meta sizes activations', () => {
    const model = new TransformerLM(gpt2Small(), { backend: 'meta' });
    const before = memory('meta').liveBytes;
    const ids = zeros([2, 128], { dtype: 'int32', backend: 'meta' });
    const { logits, loss } = model.forward(ids, { targets: ids });
    assert.deepEqual(logits.shape, [2, 128, 50257]);
    assert.deepEqual(loss!.shape, []);
    assert.ok(memory('meta').liveBytes - before >= 2 * 128 * 50257 * 4);
  });
});

describe('TransformerLM', () => {
  test('w2 preset: tied head, 4 layers of 128', () => {
    const model = new TransformerLM(w2(65));
    assert.equal(model.lmHead.weight, model.embedTokens.weight);
    assert.equal(model.layers.length, 4);
    assert.equal(model.numParameters(), 65 * 128 + 64 * 128 + 4 * (2 * 256 + 4 * (128 * 128 + 128) + 2 * 128 * 512 + 512 + 128) + 256);
  });

  test('rejects sequences longer than blockSize', () => {
    const model = new TransformerLM(gptTiny());
    assert.throws(() => model.forward(zeros([1, 9], { dtype: 'int32' })), /exceed blockSize 8/);
  });

  for (const [name, cfg] of [['gpt', gptTiny], ['llama', llamaTiny]] as const) {
    test(`${name}: logits with a KV cache, token by token, equal the full forward`, () => {
      manualSeed(1);
      const model = new TransformerLM(cfg());
      const ids = randint(0, 23, [2, 8]);
      const full = model.forward(ids).logits.dataSync();
      const cache = new KVCache(model.config.nLayer);
      const flat = ids.dataSync();
      for (let t = 0; t < 8; t++) {
        const step = tensor([[flat[t]], [flat[8 + t]]], { dtype: 'int32' });
        const row = model.forward(step, { kvCache: cache }).logits.dataSync();
        for (let b = 0; b < 2; b++) {
          for (let v = 0; v < 23; v++) {
            assert.ok(Math.abs(row[b * 23 + v] - full[(b * 8 + t) * 23 + v]) < 1e-5, `${name} t=${t}`);
          }
        }
      }
      assert.equal(cache.length, 8);
      cache.dispose();
    });

    test(`${name}: generate with the KV cache gives exactly the no-cache tokens`, () => {
      manualSeed(2);
      const model = new TransformerLM(cfg());
      const prompt = tensor([[1, 2, 3], [4, 5, 6]], { dtype: 'int32' });
      for (const opts of [{ temperature: 0 }, { temperature: 1, seed: 7 }, { temperature: 0.8, topK: 5, seed: 3 }]) {
        // 12 new tokens overflow blockSize 8, so the sliding window path runs too.
        const cached = model.generate(prompt, { maxNewTokens: 12, ...opts, useCache: true });
        const plain = model.generate(prompt, { maxNewTokens: 12, ...opts, useCache: false });
        assert.deepEqual(cached.shape, [2, 15]);
        assert.deepEqual(cached.toArray(), plain.toArray(), JSON.stringify(opts));
        assert.deepEqual((cached.toArray() as number[][])[0].slice(0, 3), [1, 2, 3]);
      }
    });
  }

  test('generate with a seed leaves the global RNG alone and reproduces', () => {
    const model = new TransformerLM(gptTiny());
    const prompt = tensor([[0]], { dtype: 'int32' });
    const a = model.generate(prompt, { maxNewTokens: 6, seed: 11 }).toArray();
    const b = model.generate(prompt, { maxNewTokens: 6, seed: 11 }).toArray();
    assert.deepEqual(a, b);
  });

  test('tied weights are updated once per optimizer step', () => {
    manualSeed(3);
    const cfg = { ...gptTiny(), tieWordEmbeddings: true };
    const model = new TransformerLM(cfg);
    const twin = new TransformerLM(cfg);
    twin.loadStateDict(model.stateDict());
    const ids = randint(0, 23, [2, 8]);
    const opt = new SGD([...model.parameters(), model.lmHead.weight], { lr: 0.5 });
    assert.equal(opt.paramGroups[0].params.length, model.parameters().length);
    const before = Float32Array.from(model.embedTokens.weight.dataSync());
    trainStep(model, opt, { x: ids.dataSync() as Int32Array, y: ids.dataSync() as Int32Array, shape: [2, 8], offsets: new Int32Array(2) });
    const g = (() => {
      twin.forward(ids, { targets: ids }).loss!.backward();
      return twin.embedTokens.weight.grad!.dataSync();
    })();
    const after = model.embedTokens.weight.dataSync();
    for (let i = 0; i < after.length; i++) assert.ok(Math.abs(after[i] - (before[i] - 0.5 * g[i])) < 1e-6);
  });

  test('a tiny model overfits a fixed batch (loss < 0.1)', () => {
    manualSeed(4);
    const model = new TransformerLM(gptTiny());
    const x = randint(0, 23, [4, 8]);
    const y = randint(0, 23, [4, 8]);
    const batch = { x: x.dataSync() as Int32Array, y: y.dataSync() as Int32Array, shape: [4, 8] as [number, number], offsets: new Int32Array(4) };
    const opt = new AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0 });
    let loss = Infinity;
    let steps = 0;
    while (loss >= 0.1 && steps < 400) {
      loss = trainStep(model, opt, batch).loss;
      steps++;
    }
    assert.ok(loss < 0.1, `loss ${loss} after ${steps} steps`);
  });
});

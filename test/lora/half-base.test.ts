import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { manualSeed, memory, tensor, type Tensor } from '@lowrank/core';
import { AdamW, TransformerLM, gptTiny, llamaTiny, type TransformerConfig } from '@lowrank/nn';
import { getPeftModel } from '@lowrank/lora';

/** A seeded model and a fixed batch; vocabulary and block size from the config. */
function setup(config: TransformerConfig, seed: number): { model: TransformerLM; ids: Tensor; targets: Tensor } {
  manualSeed(seed);
  const model = new TransformerLM({ ...config, tieWordEmbeddings: true });
  const t = config.blockSize;
  const v = config.vocabSize;
  const ids = tensor(Array.from({ length: 2 * t }, (_, i) => (i * 7 + 3) % v), { shape: [2, t], dtype: 'int32' });
  const targets = tensor(Array.from({ length: 2 * t }, (_, i) => (i * 5 + 1) % v), { shape: [2, t], dtype: 'int32' });
  return { model, ids, targets };
}

/** One AdamW step of LoRA on every Linear; the loss and the updated adapter values. */
function loraStep(model: TransformerLM, ids: Tensor, targets: Tensor, toHalf: 'bfloat16' | 'float16' | null) {
  manualSeed(99); // the same adapter initialisation for both runs
  const peft = getPeftModel(model, { r: 4, loraAlpha: 8, targetModules: 'all-linear', initLoraWeights: false });
  if (toHalf) model.to({ dtype: toHalf });
  const trainable = peft.parameters().filter((p) => p.requiresGrad);
  const opt = new AdamW(trainable, { lr: 1e-2 });
  const { loss } = model.forward(ids, { targets });
  loss!.backward();
  opt.step();
  return { loss: loss!.item(), adapters: trainable.map((p) => Array.from(p.dataSync())) };
}

describe('LoRA on a 16-bit base', () => {
  for (const [name, config] of [['gpt', gptTiny()], ['llama', llamaTiny()]] as const) {
    for (const dtype of ['bfloat16', 'float16'] as const) {
      test(`${name}: a training step on a ${dtype} base matches the step on a float32 copy of the rounded weights`, () => {
        const half = setup(config, 11);
        const ref = setup(config, 11);
        // The reference holds the rounded base weights in float32.
        for (const p of ref.model.parameters()) if (p.rank >= 2) p.requiresGrad_(false).castTo_(dtype).castTo_('float32');
        const a = loraStep(half.model, half.ids, half.targets, dtype);
        const b = loraStep(ref.model, ref.ids, ref.targets, null);
        const matrices = half.model.parameters().filter((p) => p.rank >= 2 && !p.requiresGrad);
        assert.ok(matrices.length > 0 && matrices.every((p) => p.dtype === dtype), 'the frozen matrices are 16-bit');
        assert.ok(half.model.parameters().filter((p) => p.requiresGrad).every((p) => p.dtype === 'float32'));
        assert.ok(Math.abs(a.loss - b.loss) <= 1e-5 * Math.abs(b.loss), `loss ${a.loss} vs ${b.loss}`);
        a.adapters.forEach((vals, i) => vals.forEach((v, j) => {
          const e = b.adapters[i][j];
          if (!(Math.abs(v - e) <= 1e-5 * Math.max(1, Math.abs(e)))) assert.fail(`adapter ${i}[${j}] = ${v}, expected ${e}`);
        }));
      });
    }
  }

  test('model.to({ dtype }) halves the memory of the frozen matrices and keeps tied weights tied', () => {
    const { model } = setup(gptTiny(), 3);
    getPeftModel(model, { r: 2, targetModules: ['q_proj'] });
    const before = memory().liveBytes;
    const frozen = model.parameters().filter((p) => p.rank >= 2 && !p.requiresGrad);
    const elements = frozen.reduce((s, p) => s + p.size, 0);
    model.to({ dtype: 'bfloat16' });
    assert.equal(before - memory().liveBytes, 2 * elements);
    const sd = model.stateDict();
    assert.equal(sd['lm_head.weight'], sd['embed_tokens.weight']);
    assert.equal(sd['lm_head.weight'].dtype, 'bfloat16');
    model.to({ dtype: 'float32' });
    assert.ok(model.parameters().every((p) => p.dtype === 'float32'));
  });

  test('model.to({ dtype }) on a model whose weights all train is an error saying to freeze first', () => {
    const { model } = setup(gptTiny(), 4);
    assert.throws(() => model.to({ dtype: 'bfloat16' }), /every weight matrix of TransformerLM trains.*freeze the base first/);
    assert.ok(model.parameters().every((p) => p.dtype === 'float32'));
  });

  test('loadStateDict({ dtype }) stores the loaded matrices in 16 bits, frozen; 1-D parameters stay float32', () => {
    const src = setup(gptTiny(), 5).model;
    const { model } = setup(gptTiny(), 6);
    model.loadStateDict(src.stateDict(), { dtype: 'bfloat16' });
    for (const [k, p] of Object.entries(model.stateDict())) {
      if (p.rank >= 2) {
        assert.equal(p.dtype, 'bfloat16', k);
        assert.equal(p.requiresGrad, false, k);
      } else {
        assert.equal(p.dtype, 'float32', k);
      }
    }
    assert.throws(() => model.loadStateDict(src.stateDict(), { dtype: 'int8' as 'bfloat16' }), /loadStateDict: dtype must be/);
  });
});

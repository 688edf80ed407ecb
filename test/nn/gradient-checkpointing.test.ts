import assert from 'node:assert/strict';
import { test } from 'node:test';
import { manualSeed, memory, randint, resetPeak, tidy } from '@lowrank/core';
import { TransformerLM, gptTiny, llamaTiny, w2 } from '@lowrank/nn';
import { LoraConfig, getPeftModel } from '@lowrank/lora';

type Grads = { loss: number; grads: Map<string, Float32Array | Float64Array | Int32Array> };

function run(make: () => TransformerLM, ckpt: boolean, lora: boolean, dropoutSeed = 7): Grads {
  return tidy(() => {
    manualSeed(1);
    const base = make();
    const model = lora ? getPeftModel(base, new LoraConfig({ r: 4, loraAlpha: 8, initLoraWeights: false })) : base;
    if (ckpt) base.gradientCheckpointingEnable();
    manualSeed(2);
    const { vocabSize, blockSize } = base.config;
    const x = randint(0, vocabSize, [2, blockSize]);
    const y = randint(0, vocabSize, [2, blockSize]);
    manualSeed(dropoutSeed);
    const { loss } = model.forward(x, { targets: y });
    loss!.backward();
    const grads = new Map<string, Float32Array | Float64Array | Int32Array>();
    for (const [name, p] of model.namedParameters()) if (p.grad) grads.set(name, p.grad.dataSync());
    return { loss: loss!.item(), grads };
  });
}

function assertSame(a: Grads, b: Grads): void {
  assert.equal(a.loss, b.loss);
  assert.deepEqual([...a.grads.keys()], [...b.grads.keys()]);
  for (const [name, g] of a.grads) {
    const h = b.grads.get(name)!;
    for (let i = 0; i < g.length; i++) {
      assert.ok(Math.abs(g[i] - h[i]) <= 1e-6 * (1 + Math.abs(h[i])), `${name}[${i}]: ${g[i]} vs ${h[i]}`);
    }
  }
}

for (const [flavour, make] of [['gpt', () => new TransformerLM({ ...gptTiny(), dropout: 0.1 })], ['llama', () => new TransformerLM(llamaTiny())]] as const) {
  test(`${flavour}: gradient checkpointing gives the loss and every gradient of the plain step (dropout replayed)`, () => {
    assertSame(run(make, true, false), run(make, false, false));
  });
  test(`${flavour} + LoRA: checkpointing gives the same adapter gradients, none for frozen weights`, () => {
    const ckpt = run(make, true, true);
    assertSame(ckpt, run(make, false, true));
    assert.ok([...ckpt.grads.keys()].every((k) => k.includes('lora_')));
  });
}

test('gradient checkpointing lowers the peak tensor bytes of a W2 training step', () => {
  const peak = (ckpt: boolean): number => tidy(() => {
    manualSeed(0);
    const model = new TransformerLM(w2(65));
    if (ckpt) model.gradientCheckpointingEnable();
    const x = randint(0, 65, [4, 64]);
    const y = randint(0, 65, [4, 64]);
    resetPeak();
    const start = memory().liveBytes;
    model.forward(x, { targets: y }).loss!.backward();
    return memory().peakBytes - start;
  });
  const plain = peak(false);
  const ckpt = peak(true);
  assert.ok(ckpt < 0.75 * plain, `checkpointed ${ckpt} vs plain ${plain}`);
});

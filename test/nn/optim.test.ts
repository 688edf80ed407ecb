import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { manualSeed, memory, randint, tensor } from '@lowrank/core';
import {
  Adam, AdamW, LambdaLR, SGD, TransformerLM, clipGradNorm, cosineWithWarmup, gptTiny, linearWithWarmup, trainStep,
} from '@lowrank/nn';

describe('schedules', () => {
  test('cosine with warmup: ramps linearly, peaks at 1, decays to minRatio', () => {
    const f = cosineWithWarmup({ warmupSteps: 10, totalSteps: 110, minRatio: 0.1 });
    assert.equal(f(0), 0.1);
    assert.equal(f(9), 1);
    assert.equal(f(10), 1);
    assert.ok(Math.abs(f(60) - 0.55) < 1e-12);
    assert.ok(Math.abs(f(110) - 0.1) < 1e-12);
    assert.ok(Math.abs(f(500) - 0.1) < 1e-12);
  });

  test('linear with warmup', () => {
    const f = linearWithWarmup({ warmupSteps: 4, totalSteps: 104 });
    assert.equal(f(1), 0.5);
    assert.equal(f(54), 0.5);
    assert.equal(f(104), 0);
  });

  test('property: multipliers stay in [minRatio, 1] and decay monotonically after warmup', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 1, max: 500 }), fc.double({ min: 0, max: 0.9, noNaN: true }), (w, extra, min) => {
      for (const f of [cosineWithWarmup({ warmupSteps: w, totalSteps: w + extra, minRatio: min }), linearWithWarmup({ warmupSteps: w, totalSteps: w + extra, minRatio: min })]) {
        let prev = Infinity;
        for (let s = w; s <= w + extra + 5; s++) {
          const v = f(s);
          assert.ok(v <= prev + 1e-12 && v >= min - 1e-12 && v <= 1 + 1e-12);
          prev = v;
        }
      }
    }));
  });

  test('LambdaLR sets lr = base * f(step) and restores from stateDict', () => {
    const p = tensor([1, 2], { requiresGrad: true });
    const opt = new SGD([p], { lr: 0.2 });
    const sched = new LambdaLR(opt, linearWithWarmup({ warmupSteps: 2, totalSteps: 12 }));
    assert.equal(opt.lr, 0.1);
    sched.step();
    assert.equal(opt.lr, 0.2);
    const saved = sched.stateDict();
    sched.step();
    const other = new LambdaLR(opt, linearWithWarmup({ warmupSteps: 2, totalSteps: 12 }));
    other.loadStateDict(saved);
    assert.equal(opt.lr, 0.2);
  });
});

describe('optimizers', () => {
  test('clipGradNorm returns the total norm and scales gradients to maxNorm', () => {
    const a = tensor([3, 0], { requiresGrad: true });
    const b = tensor([[4]], { requiresGrad: true });
    a.grad = tensor([3, 0]);
    b.grad = tensor([[4]]);
    const norm = clipGradNorm([a, b, a], 1);
    assert.ok(Math.abs(norm - 5) < 1e-6);
    assert.ok(Math.abs(a.grad.dataSync()[0] - 0.6) < 1e-6);
    assert.ok(Math.abs(b.grad.dataSync()[0] - 0.8) < 1e-6);
    assert.ok(Math.abs(clipGradNorm([a, b], 10) - 1) < 1e-5);
    assert.ok(Math.abs(a.grad.dataSync()[0] - 0.6) < 1e-6);
  });

  test('invalid hyperparameters fail clearly', () => {
    const p = tensor([1], { requiresGrad: true });
    assert.throws(() => new AdamW([p], { lr: -1 }), /lr must be >= 0/);
    assert.throws(() => new Adam([p], { betas: [1, 0.9] }), /betas/);
    assert.throws(() => new SGD([p], { nesterov: true }), /nesterov/);
  });

  test('param groups take their own hyperparameters; parameters without grads are skipped', () => {
    const a = tensor([1], { requiresGrad: true });
    const b = tensor([1], { requiresGrad: true });
    const c = tensor([1], { requiresGrad: true });
    const opt = new SGD([{ params: [a] }, { params: [b, c], lr: 1 }], { lr: 0.1 });
    a.grad = tensor([1]);
    b.grad = tensor([1]);
    opt.step();
    assert.ok(Math.abs(a.dataSync()[0] - 0.9) < 1e-7);
    assert.equal(b.dataSync()[0], 0);
    assert.equal(c.dataSync()[0], 1);
  });

  test('optimizer stateDict round-trips exactly, and a mismatched one is rejected', () => {
    manualSeed(5);
    const model = new TransformerLM(gptTiny());
    const opt = new AdamW(model.parameters(), { lr: 1e-3, amsgrad: true });
    const ids = randint(0, 23, [2, 8]);
    const batch = { x: ids.dataSync() as Int32Array, y: ids.dataSync() as Int32Array, shape: [2, 8] as [number, number], offsets: new Int32Array(2) };
    trainStep(model, opt, batch);
    const saved = opt.stateDict();
    const other = new AdamW(model.parameters(), { lr: 5 });
    other.loadStateDict(saved);
    assert.deepEqual(other.stateDict(), saved);
    assert.equal(other.lr, 1e-3);
    assert.throws(() => new SGD(model.parameters()).loadStateDict(saved), /saved by AdamW/);
    assert.throws(() => new AdamW(model.parameters().slice(1)).loadStateDict(saved), /params saved/);
  });

  test('many training steps leave live tensors and bytes flat', () => {
    manualSeed(6);
    const model = new TransformerLM({ ...gptTiny(), dropout: 0.1 });
    const opt = new AdamW(model.parameters());
    const ids = randint(0, 23, [2, 8]);
    const batch = { x: ids.dataSync() as Int32Array, y: ids.dataSync() as Int32Array, shape: [2, 8] as [number, number], offsets: new Int32Array(2) };
    for (let i = 0; i < 3; i++) trainStep(model, opt, batch, { gradClip: 1 });
    const before = memory();
    for (let i = 0; i < 20; i++) trainStep(model, opt, batch, { gradClip: 1 });
    const now = memory();
    assert.equal(now.liveTensors, before.liveTensors);
    assert.equal(now.liveBytes, before.liveBytes);
  });
});

test('Optimizer.dispose frees every state buffer and the next step starts afresh', () => {
  const p = tensor([[0.5, -1.5], [2, 0.25]], { requiresGrad: true });
  const opt = new AdamW([p], { lr: 0.1 });
  p.grad = tensor([[0.1, 0.2], [-0.3, 0.4]]);
  opt.step();
  assert.ok(opt.getState(p));
  const before = memory().liveTensors;
  opt.dispose();
  assert.equal(opt.getState(p), undefined);
  assert.equal(memory().liveTensors, before - 2);
  opt.step();
  assert.equal(opt.getState(p)?.step, 1);
});

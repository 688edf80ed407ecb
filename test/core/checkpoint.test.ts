import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  checkpoint, dropout, manualSeed, matmul, memory, noGrad, randn, release, resetPeak, tidy, type Tensor,
} from '@lowrank/core';

function close(a: Tensor, b: Tensor, tol = 1e-6): void {
  const x = a.dataSync();
  const y = b.dataSync();
  assert.equal(x.length, y.length);
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i] - y[i]) <= tol * (1 + Math.abs(y[i])), `element ${i}: ${x[i]} vs ${y[i]}`);
}

/** A small block with a closed-over weight: tanh(tanh(x W^T) W^T) * x, then dropout; it releases its intermediates as modules do. */
function block(w: Tensor, p: number): (x: Tensor) => Tensor {
  return (x) => {
    const a = matmul(x, w, { transposeB: true });
    const t = a.tanh();
    const b = matmul(t, w, { transposeB: true });
    const u = b.tanh();
    const m = u.mul(x);
    release(a, t, b, u);
    const d = dropout(m, p);
    if (d !== m) release(m);
    return d;
  };
}

function grads(useCheckpoint: boolean, seed: number, xNeedsGrad: boolean, p: number): { x: Tensor | null; w: Tensor; loss: number } {
  manualSeed(seed);
  const x = randn([3, 5], { requiresGrad: xNeedsGrad });
  const w = randn([5, 5], { requiresGrad: true });
  manualSeed(seed + 1);
  const f = block(w, p);
  const y = useCheckpoint ? checkpoint(f, [x]) : f(x);
  const loss = y.sum();
  loss.backward();
  return { x: x.grad, w: w.grad!, loss: loss.item() };
}

test('checkpoint gives the gradients of the plain forward, dropout masks replayed (fast-check over seeds)', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 1e6 }), fc.boolean(), fc.constantFrom(0, 0.3), (seed, xNeedsGrad, p) => {
    const plain = grads(false, seed, xNeedsGrad, p);
    const ckpt = grads(true, seed, xNeedsGrad, p);
    assert.equal(ckpt.loss, plain.loss);
    close(ckpt.w, plain.w);
    if (xNeedsGrad) close(ckpt.x!, plain.x!);
    else assert.equal(ckpt.x, null);
  }), { numRuns: 20 });
});

test('checkpoint records nothing under noGrad', () => {
  const w = randn([4, 4], { requiresGrad: true });
  const y = noGrad(() => checkpoint(block(w, 0), [randn([2, 4])]));
  assert.equal(y.requiresGrad, false);
  assert.equal(y.gradFn, null);
});

test('checkpointing a chain keeps fewer bytes alive than the plain forward', () => {
  const peakOf = (useCheckpoint: boolean): number => tidy(() => {
    manualSeed(3);
    const w = randn([64, 64], { requiresGrad: true });
    let h = randn([256, 64], { requiresGrad: true });
    resetPeak();
    const start = memory().liveBytes;
    const f = block(w, 0);
    for (let i = 0; i < 8; i++) h = useCheckpoint ? checkpoint(f, [h]) : f(h);
    h.sum().backward();
    return memory().peakBytes - start;
  });
  const plain = peakOf(false);
  const ckpt = peakOf(true);
  assert.ok(ckpt < 0.6 * plain, `checkpointed peak ${ckpt} vs plain ${plain}`);
});

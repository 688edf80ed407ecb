// Defect 9 of issue 15: NaN propagates as in PyTorch, and the stable softmax paths are exact at 1e30.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  clamp, crossEntropy, layerNorm, logSoftmax, max, maximum, min, minimum, relu, rmsNorm, softmax, tensor, type Tensor,
} from '@lowrank/core';
import { backendFor, modesUnderTest } from '../gpu/modes.ts';

// `+ 0` folds -0 (from the negations inside min / minimum) into 0.
const values = (t: Tensor): number[] => Array.from(t.dataSync(), (v) => v + 0);
const backends = ['cpu', ...modesUnderTest.map((m) => backendFor(m).name)];

for (const backend of backends) {
  describe(`NaN propagation on ${backend}`, () => {
    const t = (v: number[]): Tensor => tensor(v, { backend });
    test('relu(NaN) is NaN', () => {
      assert.deepEqual(values(relu(t([NaN, -1, 2]))), [NaN, 0, 2]);
    });
    test('maximum / minimum give NaN when either side is NaN', () => {
      assert.deepEqual(values(maximum(t([NaN, 1, 3]), t([1, NaN, 2]))), [NaN, NaN, 3]);
      assert.deepEqual(values(minimum(t([NaN, 1, 3]), t([1, NaN, 2]))), [NaN, NaN, 2]);
    });
    test('max / min reductions give NaN when the slice holds a NaN, wherever it sits', () => {
      for (const v of [[NaN, 1, 2], [1, NaN, 2], [1, 2, NaN]]) {
        assert.deepEqual(values(max(t(v))), [NaN]);
        assert.deepEqual(values(min(t(v))), [NaN]);
      }
      const m = tensor([[1, NaN], [3, 4]], { backend });
      assert.deepEqual(values(max(m, 0)), [3, NaN]);
      assert.deepEqual(values(max(m, 1)), [NaN, 4]);
      assert.deepEqual(values(min(m, 1)), [NaN, 3]);
    });
    test('clamp keeps NaN and clamps the rest', () => {
      assert.deepEqual(values(clamp(t([NaN, -5, 0.5, 5]), -1, 1)), [NaN, -1, 0.5, 1]);
      assert.deepEqual(values(clamp(t([NaN, -5, 5]), null, 1)), [NaN, -5, 1]);
    });
  });
}

describe('min, minimum, clamp gradients match their definitions', () => {
  test('clamp passes the gradient inside [lo, hi] only; min to the argmin', () => {
    const x = tensor([-2, 0.5, 3], { requiresGrad: true });
    clamp(x, -1, 1).sum().backward();
    assert.deepEqual(values(x.grad!), [0, 1, 0]);
    const y = tensor([4, -1, 2], { requiresGrad: true });
    min(y).backward();
    assert.deepEqual(values(y.grad!), [0, 1, 0]);
    const a = tensor([1, 5], { requiresGrad: true });
    const b = tensor([3, 2], { requiresGrad: true });
    minimum(a, b).sum().backward();
    assert.deepEqual([values(a.grad!), values(b.grad!)], [[1, 0], [0, 1]]);
  });
  test('clamp rejects NaN bounds and no bounds', () => {
    assert.throws(() => clamp(tensor([1]), NaN, 1), /clamp: bounds must not be NaN/);
    assert.throws(() => clamp(tensor([1])), /clamp: give at least one/);
  });
});

describe('cpu softmax family at |x| = 1e30', () => {
  const close = (got: number[], want: number[]): void => {
    got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) <= 1e-6 * Math.max(1, Math.abs(want[i])), `${got} vs ${want}`));
  };
  test('logSoftmax([1e30, 1e30]) = -log 2 (x - (m + log s) would round to 0)', () => {
    close(values(logSoftmax(tensor([[1e30, 1e30]]), -1)), [-Math.LN2, -Math.LN2]);
    close(values(logSoftmax(tensor([[-1e30, -1e30, -1e30]]), -1)), [-Math.log(3), -Math.log(3), -Math.log(3)]);
  });
  test('softmax([1e30, 1e30]) = [0.5, 0.5]', () => {
    close(values(softmax(tensor([[1e30, 1e30]]), -1)), [0.5, 0.5]);
  });
  test('crossEntropy at 1e30 logits is log 2, its gradient [-0.5, 0.5]', () => {
    const logits = tensor([[1e30, 1e30]], { requiresGrad: true });
    const loss = crossEntropy(logits, tensor([0], { dtype: 'int32' }));
    close(values(loss), [Math.LN2]);
    loss.backward();
    close(values(logits.grad!), [-0.5, 0.5]);
  });
  test('layerNorm / rmsNorm at |x| = 3e19 (x^2 overflows float32) stay normalised on cpu', () => {
    const x = tensor([[3e19, -3e19, 1e19]]);
    const ln = values(layerNorm(x));
    const mu = 1e19 / 3;
    const sd = Math.sqrt(((3e19 - mu) ** 2 + (3e19 + mu) ** 2 + (1e19 - mu) ** 2) / 3);
    close(ln, [(3e19 - mu) / sd, (-3e19 - mu) / sd, (1e19 - mu) / sd]);
    const rms = Math.sqrt((9e38 + 9e38 + 1e38) / 3);
    close(values(rmsNorm(x)), [3e19 / rms, -3e19 / rms, 1e19 / rms]);
  });
});

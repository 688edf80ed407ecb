// cumsum, the worked example of ADDING_AN_OP.md: values, gradient, memory, errors.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { cumsum, gradcheck, memory, noGrad, tensor, tidy, type Tensor } from '@lowrank/core';
import { randTensor, seedArb, shapeArb, size } from './arbitraries.ts';

/** Running sums by index arithmetic, the reference. */
function naiveCumsum(values: ArrayLike<number>, shape: readonly number[], axis: number): number[] {
  const out = Array.from(values);
  const inner = size(shape.slice(axis + 1));
  const n = shape[axis];
  for (let o = 0; o < size(shape.slice(0, axis)); o++) {
    for (let k = 0; k < inner; k++) {
      for (let i = 1; i < n; i++) out[(o * n + i) * inner + k] += out[(o * n + i - 1) * inner + k];
    }
  }
  return out;
}

const shapeAndAxis = shapeArb(1, 3).chain((shape) => fc.tuple(fc.constant(shape), fc.integer({ min: -shape.length, max: shape.length - 1 })));

describe('cumsum', () => {
  test('matches running sums along any axis (negative axes too), shape kept', () => {
    fc.assert(fc.property(shapeAndAxis, seedArb, ([shape, axis], seed) => {
      const x = randTensor(shape, seed);
      const y = cumsum(x, axis);
      assert.deepEqual(y.shape, shape);
      const want = naiveCumsum(x.dataSync(), shape, axis < 0 ? axis + shape.length : axis);
      Array.from(y.dataSync()).forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-5 * (1 + Math.abs(want[i])), `element ${i}: ${v} vs ${want[i]}`));
    }), { numRuns: 30 });
  });

  test('gradient matches central differences (float64)', () => {
    fc.assert(fc.property(shapeAndAxis, seedArb, ([shape, axis], seed) => {
      const report = gradcheck((x: Tensor) => cumsum(x, axis), [randTensor(shape, seed)], { raise: false });
      assert.ok(report.ok, report.failure);
    }), { numRuns: 15 });
  });

  test('the gradient of a sum is the reversed count: [3, 2, 1]', () => {
    const x = tensor([0.5, -1, 2], { requiresGrad: true });
    x.cumsum(0).sum().backward();
    assert.deepEqual(Array.from(x.grad!.dataSync()), [3, 2, 1]);
  });

  test('leaves only its output alive (its intermediates are freed by its scope)', () => {
    const x = tensor([[1, 2, 3], [4, 5, 6]]);
    tidy(() => {
      const before = memory().liveTensors;
      const y = noGrad(() => cumsum(x, 0));
      assert.equal(memory().liveTensors, before + 1);
      assert.deepEqual(y.toArray(), [[1, 2, 3], [5, 7, 9]]);
    });
  });

  test('errors name the op', () => {
    assert.throws(() => cumsum(tensor([1, 2], { dtype: 'int32' }), 0), /cumsum: expected a float32 tensor/);
    assert.throws(() => cumsum(tensor([1, 2]), 1), /cumsum/);
  });
});

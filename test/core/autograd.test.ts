import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  add, cast, isGradEnabled, matmul, mul, noGrad, profileKernels, reshape, sum, tensor, tidy, type Tensor,
} from '@lowrank/core';
import { randTensor, seedArb } from './arbitraries.ts';

const values = (t: Tensor | null): number[] => {
  assert.ok(t, 'expected a gradient');
  return Array.from(t.dataSync());
};

function assertValues(actual: Tensor | null, expected: number[], tol = 1e-6): void {
  const a = values(actual);
  assert.equal(a.length, expected.length);
  a.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) <= tol * (1 + Math.abs(expected[i])), `element ${i}: ${v} vs ${expected[i]}`));
}

describe('autograd', () => {
  test('a tensor used twice accumulates both gradients (y = x*x + x)', () => {
    const x = tensor([1, -2, 3], { requiresGrad: true });
    sum(add(mul(x, x), x)).backward();
    assertValues(x.grad, [3, -3, 7]);
  });

  test('diamond: a shared intermediate receives the sum of its consumers', () => {
    const x = tensor([0.5, 2], { requiresGrad: true });
    const h = mul(x, 3);
    const y = add(mul(h, h), mul(h, 2));
    sum(y).backward();
    // dy/dx = (2h + 2) * 3
    assertValues(x.grad, [(2 * 1.5 + 2) * 3, (2 * 6 + 2) * 3]);
  });

  test('gradients accumulate across two backward calls, like PyTorch', () => {
    const x = tensor([1, 2], { requiresGrad: true });
    sum(mul(x, x)).backward();
    assertValues(x.grad, [2, 4]);
    sum(mul(x, 3)).backward();
    assertValues(x.grad, [5, 7]);
  });

  test('a broadcast input gets a gradient of its own shape', () => {
    const x = tensor([[1, 2, 3], [4, 5, 6]], { requiresGrad: true });
    const b = tensor([10, 20, 30], { requiresGrad: true });
    const s = tensor(2, { requiresGrad: true });
    sum(mul(add(x, b), s)).backward();
    assert.deepEqual(b.grad?.shape, [3]);
    assert.deepEqual(s.grad?.shape, []);
    assertValues(b.grad, [4, 4, 4]);
    assertValues(s.grad, [21 + 120]);
  });

  test('backward on a non-scalar without a gradient throws a clear message', () => {
    const x = tensor([1, 2, 3], { requiresGrad: true });
    const y = mul(x, x);
    assert.throws(() => y.backward(), /backward: a gradient can be implied only for a scalar output, got shape \[3\]/);
    assert.equal(x.grad, null);
    assert.throws(() => y.backward(tensor([1, 1])), /backward: gradient shape \[2\] does not match output shape \[3\]/);
    y.backward(tensor([1, 0, -1]));
    assertValues(x.grad, [2, 0, -6]);
  });

  test('backward twice through a freed graph throws', () => {
    const x = tensor([1, 2], { requiresGrad: true });
    const loss = sum(mul(x, x));
    loss.backward();
    assert.throws(() => loss.backward(), /backward: trying to backward through the graph a second time \(the node of sum was freed/);
    assertValues(x.grad, [2, 4]);
  });

  test('backward on a tensor without a graph throws', () => {
    const x = tensor([1, 2]);
    assert.throws(() => sum(x).backward(), /backward: float32\[\] does not require grad and has no graph/);
  });

  test('noGrad records nothing and restores the previous mode', () => {
    const x = tensor([1, 2], { requiresGrad: true });
    const y = noGrad(() => {
      assert.equal(isGradEnabled(), false);
      return sum(mul(x, x));
    });
    assert.equal(isGradEnabled(), true);
    assert.equal(y.requiresGrad, false);
    assert.equal(y.gradFn, null);
    assert.throws(() => y.backward(), /does not require grad/);
    assert.throws(() => noGrad(() => { throw new Error('inner'); }), /inner/);
    assert.equal(isGradEnabled(), true);
  });

  test('detach shares values but cuts the graph', () => {
    const x = tensor([1, 2], { requiresGrad: true });
    const h = mul(x, 3);
    const d = h.detach();
    assert.equal(d.requiresGrad, false);
    assert.equal(d.gradFn, null);
    assert.deepEqual(Array.from(d.dataSync()), [3, 6]);
    assert.equal(d.storage, h.storage);
    sum(add(mul(d, x), h)).backward();
    // only the direct paths: d is a constant
    assertValues(x.grad, [3 + 3, 6 + 3]);
  });

  test('requiresGrad_(false) freezes a leaf: no gradient, grad stays null', () => {
    const w = tensor([[1, 2], [3, 4]], { requiresGrad: true });
    const x = tensor([[1, 1]], { requiresGrad: true });
    w.requiresGrad_(false);
    sum(matmul(x, w)).backward();
    assert.equal(w.grad, null);
    assertValues(x.grad, [3, 7]);
    assert.throws(() => mul(x, 2).requiresGrad_(false), /requiresGrad_: cannot freeze non-leaf/);
    assert.throws(() => tensor([1], { dtype: 'int32' }).requiresGrad_(), /requiresGrad_: only float32 tensors can require gradients, got int32\[1\]/);
  });

  test('an op on frozen inputs only records no graph', () => {
    const w = tensor([1, 2]);
    const y = mul(w, w);
    assert.equal(y.requiresGrad, false);
    assert.equal(y.gradFn, null);
  });

  test('grad of a leaf does not alias the upstream gradient', () => {
    const x = tensor([1, 2], { requiresGrad: true });
    const up = tensor([5, 6]);
    x.backward(up);
    assertValues(x.grad, [5, 6]);
    assert.notEqual(x.grad?.storage, up.storage);
    const y = reshape(x, [2, 1]);
    y.backward(tensor([[1], [1]]));
    assertValues(x.grad, [6, 7]);
  });
});

describe('frozen weights cost no dW kernel (x @ W^T)', () => {
  const arb = fc.record({
    lead: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 0, maxLength: 2 }),
    t: fc.integer({ min: 1, max: 4 }),
    inF: fc.integer({ min: 1, max: 5 }),
    outF: fc.integer({ min: 1, max: 5 }),
    seed: seedArb,
  });

  function run(xShape: number[], outF: number, seed: number, trainable: boolean) {
    const x = randTensor(xShape, seed, { requiresGrad: true });
    const w = randTensor([outF, xShape[xShape.length - 1]], seed + 1, { requiresGrad: trainable });
    const loss = sum(mul(matmul(x, w, { transposeB: true }), 0.5));
    const log = profileKernels(() => loss.backward());
    return { x, w, log };
  }

  test('no kernel writes a tensor of W\'s shape when W is frozen; one more matmul when trainable', () => {
    fc.assert(fc.property(arb, ({ lead, t, inF, outF, seed }) => {
      const xShape = [...lead, t, inF];
      // dX and dW must differ in shape, or the check below is vacuous.
      fc.pre(!(xShape.length === 2 && t === outF));
      tidy(() => {
        const frozen = run(xShape, outF, seed, false);
        const wShape = frozen.w.shape;
        const same = (s: readonly number[] | undefined): boolean => !!s && s.length === wShape.length && s.every((d, i) => d === wShape[i]);
        assert.deepEqual(frozen.log.filter((r) => same(r.outShape)), [], 'a kernel produced a dW-shaped tensor for a frozen W');
        assert.equal(frozen.w.grad, null);
        assert.deepEqual(frozen.x.grad?.shape, xShape);

        const trainable = run(xShape, outF, seed, true);
        const count = (log: typeof frozen.log): number => log.filter((r) => r.kernel === 'matmul').length;
        assert.equal(count(trainable.log), count(frozen.log) + 1);
        assert.ok(trainable.log.some((r) => same(r.outShape)));
        assert.deepEqual(trainable.w.grad?.shape, wShape);
        assert.deepEqual(trainable.x.grad?.dataSync(), frozen.x.grad?.dataSync());
        for (const r of [frozen, trainable]) {
          r.x.grad?.dispose();
          r.w.grad?.dispose();
        }
      });
    }), { numRuns: 30 });
  });

  test('an input that needs no gradient (frozen x, trainable W) costs no dX kernel either', () => {
    const x = randTensor([2, 3, 5], 1);
    const w = randTensor([4, 5], 2, { requiresGrad: true });
    const loss = sum(matmul(x, w, { transposeB: true }));
    const log = profileKernels(() => loss.backward());
    assert.equal(log.filter((r) => r.kernel === 'matmul').length, 1);
    assert.ok(!log.some((r) => r.outShape && r.outShape.join() === '2,3,5'));
    assert.equal(x.grad, null);
  });
});

describe('casts', () => {
  test('float -> int32 truncates, -> bool is 0/1, and only float casts carry gradients', () => {
    const x = tensor([-1.7, 0, 0.4, 2.9], { requiresGrad: true });
    assert.deepEqual(Array.from(x.toInt().dataSync()), [-1, 0, 0, 2]);
    const b = cast(x, 'bool');
    assert.equal(b.dtype, 'bool');
    assert.deepEqual(Array.from(b.dataSync()), [1, 0, 1, 1]);
    assert.equal(b.requiresGrad, false);
    sum(mul(x.toFloat(), 2)).backward();
    assertValues(x.grad, [2, 2, 2, 2]);
  });
});

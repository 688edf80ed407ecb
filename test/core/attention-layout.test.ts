// scaledDotProductAttention's 'bthd' layout: projections viewed per head, no permute, same values and gradients.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { gradcheck, mul, permute, profileKernels, scaledDotProductAttention, tidy, type Tensor } from '@lowrank/core';
import { randTensor, seedArb } from './arbitraries.ts';

const sizes = fc.tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 4 }),
  fc.integer({ min: 0, max: 2 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.boolean(), seedArb);

describe("scaledDotProductAttention, layout 'bthd'", () => {
  test('equals the default layout on permuted inputs, forward and gradients (float64 central differences)', () => {
    fc.assert(fc.property(sizes, ([B, H, tq, extra, dk, dv, causal, seed]) => {
      const tk = tq + extra;
      const q = randTensor([B, tq, H, dk], seed, { requiresGrad: true });
      const k = randTensor([B, tk, H, dk], seed + 1, { requiresGrad: true });
      const v = randTensor([B, tk, H, dv], seed + 2, { requiresGrad: true });
      const y = scaledDotProductAttention(q, k, v, { causal, layout: 'bthd' });
      assert.deepEqual(y.shape, [B, tq, H, dv]);
      const heads = (t: Tensor): Tensor => permute(t, [0, 2, 1, 3]);
      const want = heads(scaledDotProductAttention(heads(q), heads(k), heads(v), { causal }));
      const [a, b] = [y.dataSync(), want.dataSync()];
      a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) <= 1e-5 * (1 + Math.abs(b[i])), `out[${i}]: ${x} vs ${b[i]}`));
      const w = randTensor([B, tq, H, dv], seed + 3);
      const report = gradcheck((qq, kk, vv, ww) => mul(scaledDotProductAttention(qq, kk, vv, { causal, layout: 'bthd' }), ww).sum(), [q, k, v, w], { raise: false });
      assert.ok(report.ok, report.failure);
    }), { numRuns: 20 });
  });

  test('no permute kernel runs, forward or backward', () => {
    const q = randTensor([2, 5, 3, 4], 1, { requiresGrad: true });
    const k = randTensor([2, 5, 3, 4], 2, { requiresGrad: true });
    const v = randTensor([2, 5, 3, 4], 3, { requiresGrad: true });
    tidy(() => {
      const log = profileKernels(() => scaledDotProductAttention(q, k, v, { causal: true, layout: 'bthd' }).sum().backward());
      // The sum's backward broadcasts dy ([2, 5, 3, 4]); a head permute would make [2, 3, 5, 4].
      assert.deepEqual(log.filter((r) => r.kernel === 'strided' && r.outShape?.join() === '2,3,5,4'), []);
    });
  });

  test('errors name the op and the layout', () => {
    const x = randTensor([2, 3, 4], 5);
    assert.throws(() => scaledDotProductAttention(x, x, x, { layout: 'bthd' }), /scaledDotProductAttention: layout 'bthd' needs \[B, T, H, D\]/);
    const q = randTensor([1, 3, 2, 4], 6);
    const k = randTensor([1, 3, 1, 4], 7);
    assert.throws(() => scaledDotProductAttention(q, k, k, { layout: 'bthd' }), /scaledDotProductAttention: incompatible .*\(bthd\)/);
  });
});

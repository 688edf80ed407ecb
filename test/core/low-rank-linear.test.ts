// lowRankLinear (a LoRA linear in two kernels): values, gradients, frozen-weight work, memory, errors.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  add, gelu, gradcheck, layerNorm, linear, lowRankLinear, matmul, memory, mul, noGrad, profileKernels, rmsNorm, tensor, tidy, transpose, type Tensor,
} from '@lowrank/core';
import { randTensor, seedArb, shapeArb } from './arbitraries.ts';

/** The unfused LoRA forward: linear(x, W, b) + scale * (x A^T) B^T. */
function reference(x: Tensor, w: Tensor, b: Tensor | null, a: Tensor, bm: Tensor, s: number, fio: boolean): Tensor {
  const base = linear(x, fio ? transpose(w, 0, 1) : w, b);
  return add(base, matmul(mul(matmul(x, a, { transposeB: true }), s), bm, { transposeB: true }));
}

/** [lead, in, out, r, bias, fanInFanOut, seed] */
const caseArb = fc.tuple(shapeArb(0, 2, 3), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 6 }),
  fc.integer({ min: 1, max: 3 }), fc.boolean(), fc.boolean(), seedArb);

function make([lead, inF, out, r, withBias, fio, seed]: [number[], number, number, number, boolean, boolean, number], requiresGrad = true) {
  const opts = { requiresGrad };
  return {
    x: randTensor([...(lead.length ? lead : [1]), inF], seed, opts),
    w: randTensor(fio ? [inF, out] : [out, inF], seed + 1, opts),
    b: withBias ? randTensor([out], seed + 2, opts) : null,
    a: randTensor([r, inF], seed + 3, opts),
    bm: randTensor([out, r], seed + 4, opts),
    fio,
  };
}

describe('lowRankLinear', () => {
  test('equals linear(x, W, b) + scale (x A^T) B^T on random shapes, both weight layouts', () => {
    fc.assert(fc.property(caseArb, fc.double({ min: -3, max: 3, noNaN: true }), (c, s) => {
      const { x, w, b, a, bm, fio } = make(c, false);
      const y = lowRankLinear(x, w, b, a, bm, s, { fanInFanOut: fio });
      const want = reference(x, w, b, a, bm, s, fio);
      assert.deepEqual(y.shape, want.shape);
      const wv = want.dataSync();
      Array.from(y.dataSync()).forEach((v, i) => assert.ok(Math.abs(v - wv[i]) <= 1e-5 * (1 + Math.abs(wv[i])), `element ${i}: ${v} vs ${wv[i]}`));
    }), { numRuns: 40 });
  });

  test('gradients of x, W, b, A and B match central differences (float64)', () => {
    fc.assert(fc.property(caseArb, (c) => {
      const { x, w, b, a, bm, fio } = make(c);
      const fn = (...ts: Tensor[]): Tensor => {
        const [xx, ww, aa, bb, bias] = ts;
        return mul(lowRankLinear(xx, ww, bias ?? null, aa, bb, 1.5, { fanInFanOut: fio }), lowRankLinear(xx, ww, bias ?? null, aa, bb, -0.5, { fanInFanOut: fio })).sum();
      };
      const report = gradcheck(fn, b ? [x, w, a, bm, b] : [x, w, a, bm], { raise: false });
      assert.ok(report.ok, report.failure);
    }), { numRuns: 25 });
  });

  test('a frozen base weight costs no dW kernel; x frozen costs no dx kernel', () => {
    const { x, w, b, a, bm } = make([[2, 3], 8, 8, 2, true, false, 7], false);
    a.requiresGrad = true;
    bm.requiresGrad = true;
    tidy(() => {
      const y = lowRankLinear(x, w, b, a, bm, 2);
      const log = profileKernels(() => y.sum().backward());
      const shapes = log.filter((r) => r.kernel === 'matmul').map((r) => JSON.stringify(r.outShape));
      // g = 2 dY B [6, 2], dA [2, 8], dB [8, 2]: nothing of W's or x's shape.
      assert.deepEqual(shapes.sort(), ['[2,8]', '[6,2]', '[8,2]']);
      assert.ok(a.grad && bm.grad && !w.grad && !x.grad);
    });
  });

  test('the gradient of A and x against the unfused graph (a LoRA layer, B non-zero)', () => {
    const grads = (fused: boolean): number[][] => {
      const { x, w, b, a, bm } = make([[2, 2], 4, 8, 2, true, false, 3]);
      w.requiresGrad = false;
      const y = fused ? lowRankLinear(x, w, b, a, bm, 2) : reference(x, w, b, a, bm, 2, false);
      mul(y, y).sum().backward();
      return [x, a, bm, b!].map((t) => Array.from(t.grad!.dataSync()));
    };
    const [f, u] = [grads(true), grads(false)];
    f.forEach((g, k) => g.forEach((v, i) => assert.ok(Math.abs(v - u[k][i]) <= 1e-4 * (1 + Math.abs(u[k][i])), `input ${k}[${i}]: ${v} vs ${u[k][i]}`)));
  });

  test('leaves only its output alive, in and out of the tape', () => {
    const { x, w, b, a, bm } = make([[3], 4, 4, 2, true, false, 5], false);
    tidy(() => {
      const before = memory().liveTensors;
      noGrad(() => lowRankLinear(x, w, b, a, bm, 1));
      assert.equal(memory().liveTensors, before + 1);
    });
    a.requiresGrad = true;
    const before = memory().liveTensors;
    tidy(() => {
      lowRankLinear(x, w, b, a, bm, 1).sum().backward();
    });
    assert.equal(memory().liveTensors, before + 1, 'only A.grad survives');
    a.grad!.dispose();
  });

  test('linear with an addend equals linear + addend, and its gradients match central differences', () => {
    fc.assert(fc.property(caseArb, ([lead, inF, out, , withBias, , seed]) => {
      const l = lead.length ? lead : [1];
      const x = randTensor([...l, inF], seed, { requiresGrad: true });
      const w = randTensor([out, inF], seed + 1, { requiresGrad: true });
      const b = withBias ? randTensor([out], seed + 2, { requiresGrad: true }) : null;
      const res = randTensor([...l, out], seed + 3, { requiresGrad: true });
      const y = noGrad(() => linear(x, w, b, { addend: res }));
      const want = noGrad(() => add(linear(x, w, b), res));
      const wv = want.dataSync();
      Array.from(y.dataSync()).forEach((v, i) => assert.ok(Math.abs(v - wv[i]) <= 1e-5 * (1 + Math.abs(wv[i])), `element ${i}: ${v} vs ${wv[i]}`));
      const fn = (...ts: Tensor[]): Tensor => {
        const [xx, ww, rr, bb] = ts;
        const o = linear(xx, ww, bb ?? null, { addend: rr });
        return mul(o, o).sum();
      };
      const report = gradcheck(fn, b ? [x, w, res, b] : [x, w, res], { raise: false });
      assert.ok(report.ok, report.failure);
    }), { numRuns: 25 });
  });

  test('the gradients of an input read by several linears are summed inside their matmuls (no add kernel)', () => {
    const x = randTensor([2, 3, 8], 11, { requiresGrad: true });
    const [w1, w2, w3] = [12, 13, 14].map((s) => randTensor([8, 8], s));
    const a = randTensor([2, 8], 15, { requiresGrad: true });
    const bm = randTensor([8, 2], 16, { requiresGrad: true });
    const c = randTensor([2, 3, 8], 17);
    const loss = (fused: boolean): Tensor => {
      const ys = fused
        ? [linear(x, w1), lowRankLinear(x, w2, null, a, bm, 2), linear(x, w3)]
        : [linear(x, w1), reference(x, w2, null, a, bm, 2, false), linear(x, w3)];
      return mul(add(add(ys[0], ys[1]), ys[2]), c).sum();
    };
    const want = tidy(() => {
      loss(false).backward();
      const g = Array.from(x.grad!.dataSync());
      for (const t of [x, a, bm]) { t.grad!.dispose(); t.grad = null; }
      return g;
    });
    tidy(() => {
      const l = loss(true);
      // The one binary kernel is mul's dy * c; x's three gradients need no add.
      const log = profileKernels(() => l.backward());
      assert.equal(log.filter((r) => r.kernel === 'binary').length, 1);
    });
    Array.from(x.grad!.dataSync()).forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-4 * (1 + Math.abs(want[i])), `x.grad[${i}]: ${v} vs ${want[i]}`));
  });

  test('layerNorm and rmsNorm add the residual branch\'s gradient into their dx kernel', () => {
    for (const norm of ['layerNorm', 'rmsNorm'] as const) {
      const x = randTensor([3, 8], 21, { requiresGrad: true });
      const w = randTensor([8], 22, { requiresGrad: true });
      const c = randTensor([3, 8], 23);
      const f = (xx: Tensor, ww: Tensor, cc: Tensor): Tensor => {
        const n = norm === 'layerNorm' ? layerNorm(xx, ww, null) : rmsNorm(xx, ww);
        return mul(add(xx, n), cc).sum(); // x + norm(x): two gradients for x
      };
      const report = gradcheck(f, [x, w, c], { raise: false });
      assert.ok(report.ok, `${norm}: ${report.failure}`);
      tidy(() => {
        const l = f(x, w, c);
        const log = profileKernels(() => l.backward());
        assert.equal(log.filter((r) => r.kernel === 'binary').length, 1, `${norm}: only mul's dy * c`);
      });
    }
  });

  test('linear with a GELU input equals linear(gelu(u)); gradients match central differences; a frozen weight needs no gelu tensor', () => {
    fc.assert(fc.property(caseArb, ([lead, inF, out, , withBias, , seed]) => {
      const l = lead.length ? lead : [1];
      const u = randTensor([...l, inF], seed, { requiresGrad: true, low: -3, high: 3 });
      const w = randTensor([out, inF], seed + 1, { requiresGrad: true });
      const b = withBias ? randTensor([out], seed + 2, { requiresGrad: true }) : null;
      const y = noGrad(() => linear(u, w, b, { inputActivation: 'gelu' }));
      const want = noGrad(() => linear(gelu(u), w, b)).dataSync();
      Array.from(y.dataSync()).forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-5 * (1 + Math.abs(want[i])), `element ${i}: ${v} vs ${want[i]}`));
      const fn = (...ts: Tensor[]): Tensor => {
        const o = linear(ts[0], ts[1], ts[2] ?? null, { inputActivation: 'gelu' });
        return mul(o, o).sum();
      };
      const report = gradcheck(fn, b ? [u, w, b] : [u, w], { raise: false });
      assert.ok(report.ok, report.failure);
    }), { numRuns: 25 });
    const u = randTensor([2, 3, 8], 41, { requiresGrad: true });
    const w = randTensor([4, 8], 42);
    tidy(() => {
      const y = linear(u, w, null, { inputActivation: 'gelu' });
      const log = profileKernels(() => y.sum().backward());
      assert.deepEqual(log.filter((r) => r.kernel === 'unary' || r.kernel === 'unaryGrad'), [], 'dx = (dY W) gelu\'(u) in the matmul');
    });
  });

  test('errors name the op and every shape', () => {
    const x = tensor([[1, 2, 3]]);
    const w = tensor([[1, 2, 3], [4, 5, 6]]);
    assert.throws(() => lowRankLinear(x, w, null, tensor([[1, 2]]), tensor([[1], [2]]), 1), /lowRankLinear: .*A \[1, 2\]/);
    assert.throws(() => lowRankLinear(x, w, null, tensor([[1, 2, 3]]), tensor([[1, 2]]), 1), /lowRankLinear: .*B \[1, 2\]/);
    assert.throws(() => lowRankLinear(x, w, tensor([1, 2, 3]), tensor([[1, 2, 3]]), tensor([[1], [2]]), 1), /lowRankLinear: .*bias \[3\]/);
  });
});

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  add, concat, dropout, logSoftmax, manualSeed, matmul, mul, reshape, softmax, split, sum, tensor, tidy, transpose,
  type Tensor,
} from '@lowrank/core';
import { axisArb, axisOf, broadcastPair, randTensor, seedArb, shapeArb, size } from './arbitraries.ts';

const RUNS = { numRuns: 30 };

function assertClose(actual: Tensor, expected: Tensor, tol = 1e-5): void {
  assert.deepEqual(actual.shape, expected.shape);
  const a = actual.dataSync();
  const e = expected.dataSync();
  for (let i = 0; i < e.length; i++) {
    assert.ok(Math.abs(a[i] - e[i]) <= tol * (1 + Math.abs(e[i])), `element ${i}: ${a[i]} vs ${e[i]}`);
  }
}

describe('algebraic properties', () => {
  test('a + b == b + a (exactly, with broadcasting)', () => {
    fc.assert(fc.property(broadcastPair, seedArb, ([sa, sb], seed) => {
      tidy(() => {
        const a = randTensor(sa, seed);
        const b = randTensor(sb, seed + 1);
        const ab = add(a, b);
        const ba = add(b, a);
        assert.deepEqual(ab.shape, ba.shape);
        assert.deepEqual(ab.dataSync(), ba.dataSync());
      });
    }), RUNS);
  });

  test('(a * b) * c ≈ a * (b * c)', () => {
    fc.assert(fc.property(broadcastPair, fc.integer({ min: 0, max: 3 }), seedArb, ([sa, sb], keep, seed) => {
      tidy(() => {
        const a = randTensor(sa, seed);
        const b = randTensor(sb, seed + 1);
        // c broadcasts against both: a's trailing axes.
        const c = randTensor(sa.slice(sa.length - Math.min(keep, sa.length)), seed + 2);
        assertClose(mul(mul(a, b), c), mul(a, mul(b, c)));
      });
    }), RUNS);
  });

  test('sum over all axes == summing one axis at a time', () => {
    fc.assert(fc.property(shapeArb(1, 4), seedArb, fc.boolean(), (shape, seed, fromEnd) => {
      tidy(() => {
        const x = randTensor(shape, seed);
        let s = x;
        for (let i = 0; i < shape.length; i++) s = sum(s, fromEnd ? -1 : 0);
        const total = sum(x);
        assert.deepEqual(total.shape, []);
        assert.ok(Math.abs(total.item() - s.item()) <= 1e-4 * (1 + Math.abs(total.item())));
        const host = Array.from(x.dataSync()).reduce((p, q) => p + q, 0);
        assert.ok(Math.abs(total.item() - host) <= 1e-4 * (1 + Math.abs(host)));
      });
    }), RUNS);
  });

  test('softmax sums to 1 along its axis, on any axis', () => {
    const arb = shapeArb(1, 3).chain((shape) => fc.tuple(fc.constant(shape), axisArb(shape.length), seedArb));
    fc.assert(fc.property(arb, ([shape, axis, seed]) => {
      tidy(() => {
        const y = softmax(randTensor(shape, seed, { low: -20, high: 20 }), axis);
        const s = sum(y, axis).dataSync();
        for (const v of s) assert.ok(Math.abs(v - 1) < 1e-5, `row sum ${v}`);
        for (const v of y.dataSync()) assert.ok(v >= 0 && v <= 1);
      });
    }), RUNS);
  });

  test('logSoftmax is finite and stable for inputs of magnitude 1e4', () => {
    const arb = shapeArb(1, 3).chain((shape) => fc.tuple(fc.constant(shape), axisArb(shape.length), seedArb));
    fc.assert(fc.property(arb, ([shape, axis, seed]) => {
      tidy(() => {
        const x = randTensor(shape, seed, { low: -1e4, high: 1e4 });
        const y = logSoftmax(x, axis);
        const values = y.dataSync();
        for (const v of values) assert.ok(Number.isFinite(v) && v <= 1e-6, `logSoftmax value ${v}`);
        // exp(logSoftmax) is softmax: sums to one, and shifting x changes nothing.
        const s = sum(y.exp(), axis).dataSync();
        for (const v of s) assert.ok(Math.abs(v - 1) < 1e-4, `row sum ${v}`);
        const shifted = logSoftmax(add(x, 5000), axis);
        const sv = shifted.dataSync();
        const n = shape[axisOf(axis, shape.length)];
        for (let i = 0; i < values.length; i++) assert.ok(Math.abs(sv[i] - values[i]) <= 2e-3 * (1 + Math.abs(values[i])) || n === 1);
      });
    }), RUNS);
  });

  test('matmul with transpose flags equals matmul of explicitly transposed tensors', () => {
    const arb = fc.record({
      m: fc.integer({ min: 1, max: 5 }),
      k: fc.integer({ min: 1, max: 5 }),
      n: fc.integer({ min: 1, max: 5 }),
      batch: broadcastPair,
      transposeA: fc.boolean(),
      transposeB: fc.boolean(),
      seed: seedArb,
    });
    fc.assert(fc.property(arb, ({ m, k, n, batch: [ba, bb], transposeA, transposeB, seed }) => {
      tidy(() => {
        const a = randTensor([...ba, ...(transposeA ? [k, m] : [m, k])], seed);
        const b = randTensor([...bb, ...(transposeB ? [n, k] : [k, n])], seed + 1);
        const flagged = matmul(a, b, { transposeA, transposeB });
        const explicit = matmul(transposeA ? transpose(a, -2, -1) : a, transposeB ? transpose(b, -2, -1) : b);
        assertClose(flagged, explicit);
      });
    }), RUNS);
  });

  test('matmul matches a naive triple loop', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 }), seedArb, (m, k, n, seed) => {
      tidy(() => {
        const a = randTensor([m, k], seed);
        const b = randTensor([k, n], seed + 1);
        const av = a.dataSync();
        const bv = b.dataSync();
        const expected = new Float64Array(m * n);
        for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) expected[i * n + j] += av[i * k + p] * bv[p * n + j];
        assertClose(matmul(a, b), tensor(expected, { shape: [m, n] }));
      });
    }), RUNS);
  });

  test('reshape round trip restores shape and values', () => {
    fc.assert(fc.property(shapeArb(0, 4), seedArb, (shape, seed) => {
      tidy(() => {
        const x = randTensor(shape, seed);
        const flat = reshape(x, [-1]);
        assert.deepEqual(flat.shape, [size(shape)]);
        const back = reshape(flat, shape);
        assert.deepEqual(back.shape, shape);
        assert.deepEqual(back.dataSync(), x.dataSync());
      });
    }), RUNS);
  });

  test('split then concat is the identity', () => {
    const arb = shapeArb(1, 3, 6).chain((shape) =>
      fc.tuple(fc.constant(shape), axisArb(shape.length), fc.integer({ min: 1, max: 6 }), seedArb));
    fc.assert(fc.property(arb, ([shape, axis, section, seed]) => {
      tidy(() => {
        const x = randTensor(shape, seed);
        const pieces = split(x, section, axis);
        assert.equal(pieces.length, Math.ceil(shape[axisOf(axis, shape.length)] / section));
        const y = concat(pieces, axis);
        assert.deepEqual(y.shape, x.shape);
        assert.deepEqual(y.dataSync(), x.dataSync());
      });
    }), RUNS);
  });
});

describe('dropout properties', () => {
  test('p = 0, and eval mode, return the input unchanged', () => {
    fc.assert(fc.property(shapeArb(0, 3), seedArb, (shape, seed) => {
      const x = randTensor(shape, seed);
      assert.deepEqual(dropout(x, 0).dataSync(), x.dataSync());
      assert.deepEqual(dropout(x, 0.7, false).dataSync(), x.dataSync());
    }), RUNS);
  });

  test('kept values are scaled by 1/(1-p), dropped values are 0', () => {
    fc.assert(fc.property(shapeArb(1, 3, 6), seedArb, fc.double({ min: 0.05, max: 0.95, noNaN: true }), (shape, seed, p) => {
      tidy(() => {
        const x = randTensor(shape, seed, { minAbs: 0.1 });
        manualSeed(seed);
        const y = dropout(x, p).dataSync();
        const xv = x.dataSync();
        for (let i = 0; i < xv.length; i++) {
          if (y[i] === 0) continue;
          assert.ok(Math.abs(y[i] - xv[i] / (1 - p)) <= 1e-5 * (1 + Math.abs(y[i])), `kept ${y[i]} vs ${xv[i]} / ${1 - p}`);
        }
      });
    }), RUNS);
  });

  test('the same seed gives the same mask; another seed (almost surely) another', () => {
    fc.assert(fc.property(seedArb, (seed) => {
      tidy(() => {
        const x = randTensor([64], seed, { minAbs: 0.1 });
        manualSeed(seed);
        const a = dropout(x, 0.5).dataSync();
        manualSeed(seed);
        const b = dropout(x, 0.5).dataSync();
        assert.deepEqual(a, b);
        manualSeed(seed + 1);
        const c = dropout(x, 0.5).dataSync();
        assert.notDeepEqual(a, c);
      });
    }), { numRuns: 15 });
  });

  test('the drop rate is about p, and the gradient uses the same mask', () => {
    manualSeed(3);
    const x = randTensor([4000], 1, { minAbs: 0.1, requiresGrad: true });
    const y = dropout(x, 0.3);
    const dropped = Array.from(y.dataSync()).filter((v) => v === 0).length / 4000;
    assert.ok(Math.abs(dropped - 0.3) < 0.03, `dropped fraction ${dropped}`);
    sum(y).backward();
    const g = x.grad!.dataSync();
    const yv = y.dataSync();
    for (let i = 0; i < g.length; i++) assert.equal(g[i] === 0, yv[i] === 0);
    for (const v of g) if (v !== 0) assert.ok(Math.abs(v - 1 / 0.7) < 1e-6);
  });

  test('rejects p outside [0, 1)', () => {
    const x = randTensor([3], 1);
    assert.throws(() => dropout(x, 1), /dropout: p must be in \[0, 1\), got 1/);
    assert.throws(() => dropout(x, -0.1), /dropout: p must be in \[0, 1\), got -0.1/);
  });
});

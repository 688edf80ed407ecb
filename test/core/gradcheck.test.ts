import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  add, concat, crossEntropy, div, dropout, embedding, exp, expand, gather, gelu, gradcheck, indexSelect, layerNorm, log,
  linear, logSoftmax, manualSeed, maskedFill, matmul, max, mean, mul, narrow, neg, permute, pow, relu, reshape, rmsNorm,
  scaledDotProductAttention, sigmoid, silu, slice, softmax, split, sqrt, stack, sub, sum, tanh, tensor, transpose,
  variance, view, where, type Tensor,
} from '@lowrank/core';
import {
  axisArb, axisOf, broadcastPair, broadcastShape, distinctTensor, randIndex, randMask, randTensor, seedArb, shapeArb, size,
} from './arbitraries.ts';

const RUNS = { numRuns: 20 };

function check(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[]): void {
  const report = gradcheck(fn, inputs, { raise: false });
  assert.ok(report.ok, report.failure);
}

describe('gradcheck: elementwise unary ops', () => {
  const cases: [string, (x: Tensor) => Tensor, { low?: number; high?: number; minAbs?: number }][] = [
    ['neg', neg, {}],
    ['sqrt', sqrt, { low: 0.3, high: 3 }],
    ['exp', exp, {}],
    ['log', log, { low: 0.3, high: 3 }],
    ['tanh', tanh, {}],
    ['sigmoid', sigmoid, { low: -4, high: 4 }],
    ['relu', relu, { minAbs: 0.05 }],
    ['gelu', gelu, { low: -4, high: 4 }],
    ['silu', silu, { low: -4, high: 4 }],
  ];
  for (const [name, fn, range] of cases) {
    test(name, () => {
      fc.assert(fc.property(shapeArb(0, 3), seedArb, (shape, seed) => {
        check(fn, [randTensor(shape, seed, range)]);
      }), RUNS);
    });
  }
});

describe('gradcheck: broadcasting binary ops', () => {
  const cases: [string, (a: Tensor, b: Tensor) => Tensor, { low?: number; high?: number; minAbs?: number }][] = [
    ['add', add, {}],
    ['sub', sub, {}],
    ['mul', mul, {}],
    ['div', div, { low: -2, high: 2, minAbs: 0.5 }],
    ['pow (tensor exponent)', pow, { low: -1.5, high: 1.5 }],
  ];
  for (const [name, fn, rangeB] of cases) {
    test(name, () => {
      fc.assert(fc.property(broadcastPair, seedArb, ([sa, sb], seed) => {
        const a = name.startsWith('pow') ? randTensor(sa, seed, { low: 0.3, high: 2.5 }) : randTensor(sa, seed);
        check(fn, [a, randTensor(sb, seed + 1, rangeB)]);
      }), RUNS);
    });
  }

  test('the same tensor on both sides (x * x, x - x)', () => {
    fc.assert(fc.property(shapeArb(0, 3), seedArb, (shape, seed) => {
      check((x) => add(mul(x, x), sub(x, x)), [randTensor(shape, seed)]);
    }), RUNS);
  });

  test('scalar right-hand sides (affine paths)', () => {
    fc.assert(fc.property(shapeArb(0, 3), seedArb, (shape, seed) => {
      check((x) => div(sub(mul(add(x, 1.5), 3), 0.25), -2), [randTensor(shape, seed)]);
    }), RUNS);
  });
});

test('gradcheck: pow with a scalar exponent (integer, negative, fractional)', () => {
  fc.assert(fc.property(shapeArb(0, 3), seedArb, fc.constantFrom(2, 3, -2, -1, 0.5, 1.5, 2.5), (shape, seed, e) => {
    const positive = !Number.isInteger(e);
    const x = positive ? randTensor(shape, seed, { low: 0.3, high: 2.5 }) : randTensor(shape, seed, { minAbs: 0.4 });
    check((t) => pow(t, e), [x]);
  }), RUNS);
});

describe('gradcheck: matmul', () => {
  const matmulArb = fc.record({
    m: fc.integer({ min: 1, max: 4 }),
    k: fc.integer({ min: 1, max: 4 }),
    n: fc.integer({ min: 1, max: 4 }),
    batch: broadcastPair,
    transposeA: fc.boolean(),
    transposeB: fc.boolean(),
    seed: seedArb,
  });
  test('all transpose flag combinations with batch broadcasting', () => {
    fc.assert(fc.property(matmulArb, ({ m, k, n, batch: [ba, bb], transposeA, transposeB, seed }) => {
      const aShape = [...ba, ...(transposeA ? [k, m] : [m, k])];
      const bShape = [...bb, ...(transposeB ? [n, k] : [k, n])];
      check((a, b) => matmul(a, b, { transposeA, transposeB }), [randTensor(aShape, seed), randTensor(bShape, seed + 1)]);
    }), { numRuns: 30 });
  });
  test('linear: x W^T + b over any leading axes, with and without a bias', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), broadcastPair, fc.boolean(), seedArb,
      (inF, out, [lead], withBias, seed) => {
        const inputs = [randTensor([...lead, 2, inF], seed), randTensor([out, inF], seed + 1)];
        if (withBias) inputs.push(randTensor([out], seed + 2));
        check((x, w, b) => linear(x, w, b ?? null), inputs);
      }), { numRuns: 25 });
  });
  test('every flag combination at least once on a rank-3 x rank-2 product', () => {
    for (const transposeA of [false, true]) {
      for (const transposeB of [false, true]) {
        const a = randTensor(transposeA ? [2, 3, 4] : [2, 4, 3], 7);
        const b = randTensor(transposeB ? [5, 3] : [3, 5], 8);
        check((x, y) => matmul(x, y, { transposeA, transposeB }), [a, b]);
      }
    }
  });
});

describe('gradcheck: reductions', () => {
  const reduceArb = shapeArb(1, 3).chain((shape) =>
    fc.record({
      shape: fc.constant(shape),
      axis: fc.oneof(
        fc.constant(null),
        axisArb(shape.length),
        fc.subarray(shape.map((_, i) => i), { minLength: 1 }),
      ),
      keepdim: fc.boolean(),
      seed: seedArb,
    }),
  );
  test('sum', () => {
    fc.assert(fc.property(reduceArb, ({ shape, axis, keepdim, seed }) => {
      check((x) => sum(x, axis, keepdim), [randTensor(shape, seed)]);
    }), RUNS);
  });
  test('mean', () => {
    fc.assert(fc.property(reduceArb, ({ shape, axis, keepdim, seed }) => {
      check((x) => mean(x, axis, keepdim), [randTensor(shape, seed)]);
    }), RUNS);
  });
  test('max (no ties)', () => {
    fc.assert(fc.property(reduceArb, ({ shape, axis, keepdim, seed }) => {
      check((x) => max(x, axis, keepdim), [distinctTensor(shape, seed)]);
    }), RUNS);
  });
  test('var, biased and unbiased', () => {
    fc.assert(fc.property(reduceArb, fc.boolean(), ({ shape, axis, keepdim, seed }, unbiased) => {
      const axes = axis === null ? shape.map((_, i) => i) : typeof axis === 'number' ? [axisOf(axis, shape.length)] : axis;
      const count = size(axes.map((a) => shape[a]));
      const u = unbiased && count > 1;
      check((x) => variance(x, axis, keepdim, u), [randTensor(shape, seed)]);
    }), RUNS);
  });
});

describe('gradcheck: shape ops', () => {
  test('reshape and view (with -1)', () => {
    fc.assert(fc.property(shapeArb(0, 3), seedArb, fc.boolean(), (shape, seed, useView) => {
      const target = shape.length > 0 ? [-1, shape[0]] : [1, 1];
      const f = useView ? view : reshape;
      check((x) => mul(f(x, target), 2), [randTensor(shape, seed)]);
    }), RUNS);
  });
  test('transpose', () => {
    const arb = shapeArb(1, 4).chain((shape) => fc.tuple(fc.constant(shape), axisArb(shape.length), axisArb(shape.length), seedArb));
    fc.assert(fc.property(arb, ([shape, a0, a1, seed]) => {
      check((x) => transpose(x, a0, a1), [randTensor(shape, seed)]);
    }), RUNS);
  });
  test('permute', () => {
    const arb = shapeArb(1, 4).chain((shape) => {
      const axes = shape.map((_, i) => i);
      return fc.tuple(fc.constant(shape), fc.shuffledSubarray(axes, { minLength: axes.length, maxLength: axes.length }), seedArb);
    });
    fc.assert(fc.property(arb, ([shape, perm, seed]) => {
      check((x) => permute(x, perm), [randTensor(shape, seed)]);
    }), RUNS);
  });
  test('slice (ONNX style, negative starts/ends, steps)', () => {
    const arb = shapeArb(1, 3, 6).chain((shape) => {
      const spec = fc.tuple(
        fc.integer({ min: 0, max: shape.length - 1 }),
        fc.integer({ min: -7, max: 7 }),
        fc.integer({ min: -7, max: 8 }),
        fc.integer({ min: 1, max: 3 }),
      );
      return fc.tuple(fc.constant(shape), fc.uniqueArray(spec, { selector: (s) => s[0], minLength: 1, maxLength: shape.length }), seedArb);
    });
    fc.assert(fc.property(arb, ([shape, specs, seed]) => {
      const ax = specs.map((s) => s[0]);
      const nonEmpty = specs.every(([a, s, e, st]) => {
        const n = shape[a];
        const c = (v: number): number => Math.min(Math.max(v < 0 ? v + n : v, 0), n);
        return Math.ceil((c(e) - c(s)) / st) > 0;
      });
      fc.pre(nonEmpty);
      check((x) => slice(x, {
        axes: ax.map((a, i) => (i % 2 ? a - shape.length : a)),
        starts: specs.map((s) => s[1]),
        ends: specs.map((s) => s[2]),
        steps: specs.map((s) => s[3]),
      }), [randTensor(shape, seed)]);
    }), RUNS);
  });
  test('narrow', () => {
    const arb = shapeArb(1, 3, 5).chain((shape) =>
      fc.integer({ min: 0, max: shape.length - 1 }).chain((axis) =>
        fc.integer({ min: 0, max: shape[axis] - 1 }).chain((start) =>
          fc.tuple(fc.constant(shape), fc.constant(axis), fc.constant(start), fc.integer({ min: 1, max: shape[axis] - start }), seedArb))));
    fc.assert(fc.property(arb, ([shape, axis, start, length, seed]) => {
      check((x) => narrow(x, axis, start, length), [randTensor(shape, seed)]);
    }), RUNS);
  });
  test('concat of 2-3 tensors on any axis', () => {
    const arb = shapeArb(1, 3).chain((shape) =>
      fc.tuple(fc.constant(shape), axisArb(shape.length), fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 2, maxLength: 3 }), seedArb));
    fc.assert(fc.property(arb, ([shape, axis, lens, seed]) => {
      const a = axisOf(axis, shape.length);
      const xs = lens.map((len, i) => randTensor(shape.map((d, j) => (j === a ? len : d)), seed + i));
      check((...ts) => concat(ts, axis), xs);
    }), RUNS);
  });
  test('split (sizes and section size); pieces weighted differently', () => {
    const arb = shapeArb(1, 3, 5).chain((shape) => fc.tuple(fc.constant(shape), axisArb(shape.length), fc.integer({ min: 1, max: 5 }), seedArb));
    fc.assert(fc.property(arb, ([shape, axis, section, seed]) => {
      check((x) => {
        const pieces = split(x, section, axis);
        return pieces.map((p, i) => sum(mul(p, p), null).mul(i + 1)).reduce((s, t) => add(s, t));
      }, [randTensor(shape, seed)]);
      const n = shape[axisOf(axis, shape.length)];
      const sizes = n > 1 ? [1, n - 1] : [1];
      check((x) => concat(split(x, sizes, axis).map((p, i) => mul(p, i + 2)), axis), [randTensor(shape, seed + 1)]);
    }), RUNS);
  });
  test('stack', () => {
    const arb = shapeArb(0, 3).chain((shape) =>
      fc.tuple(fc.constant(shape), axisArb(shape.length + 1), fc.integer({ min: 1, max: 3 }), seedArb));
    fc.assert(fc.property(arb, ([shape, axis, count, seed]) => {
      const xs = Array.from({ length: count }, (_, i) => randTensor(shape, seed + i));
      check((...ts) => stack(ts, axis), xs);
    }), RUNS);
  });
  test('expand (size-1 axes, new leading axes, -1)', () => {
    const arb = fc.record({
      target: shapeArb(1, 4),
      lead: fc.integer({ min: 0, max: 2 }),
      ones: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
      minus: fc.boolean(),
      seed: seedArb,
    });
    fc.assert(fc.property(arb, ({ target, lead, ones: isOne, minus, seed }) => {
      const l = Math.min(lead, target.length);
      const own = target.slice(l).map((d, i) => (isOne[i] ? 1 : d));
      const spec = target.map((d, i) => (minus && i >= l && own[i - l] === d ? -1 : d));
      check((x) => expand(x, spec), [randTensor(own, seed)]);
    }), RUNS);
  });
});

describe('gradcheck: selection and indexing', () => {
  test('where (bool condition, all three broadcast)', () => {
    const ones3 = fc.array(fc.boolean(), { minLength: 3, maxLength: 3 });
    fc.assert(fc.property(broadcastPair, ones3, fc.integer({ min: 0, max: 3 }), seedArb, ([sa, sb], isOne, drop, seed) => {
      const full = broadcastShape(sa, sb);
      const cShape = full.slice(Math.min(drop, full.length)).map((d, i) => (isOne[i] ? 1 : d));
      check((c, a, b) => where(c, a, b), [randMask(cShape, seed), randTensor(sa, seed + 1), randTensor(sb, seed + 2)]);
    }), RUNS);
  });
  test('maskedFill (mask broadcast to x)', () => {
    fc.assert(fc.property(broadcastPair, seedArb, fc.constantFrom(0, -1e4, 3.5), ([sx, sm], seed, value) => {
      check((x, m) => maskedFill(x, m, value), [randTensor(broadcastShape(sx, sm), seed), randMask(sm, seed + 1)]);
    }), RUNS);
  });
  test('gather (repeated indices scatter-add)', () => {
    const arb = shapeArb(1, 3).chain((shape) => fc.tuple(fc.constant(shape), axisArb(shape.length), fc.integer({ min: 1, max: 5 }), seedArb));
    fc.assert(fc.property(arb, ([shape, axis, len, seed]) => {
      const a = axisOf(axis, shape.length);
      const index = randIndex(shape.map((d, i) => (i === a ? len : d)), shape[a], seed + 1);
      check((x, idx) => gather(x, idx, axis), [randTensor(shape, seed), index]);
    }), RUNS);
  });
  test('indexSelect (repeated indices)', () => {
    const arb = shapeArb(1, 3).chain((shape) => fc.tuple(fc.constant(shape), axisArb(shape.length), fc.integer({ min: 1, max: 6 }), seedArb));
    fc.assert(fc.property(arb, ([shape, axis, count, seed]) => {
      const index = randIndex([count], shape[axisOf(axis, shape.length)], seed + 1);
      check((x, idx) => indexSelect(x, axis, idx), [randTensor(shape, seed), index]);
    }), RUNS);
  });
  test('embedding (any index shape, repeated rows)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 4 }), shapeArb(0, 3), seedArb, (vocab, d, idxShape, seed) => {
      const ids = randIndex(idxShape, vocab, seed + 1);
      check((w, i) => embedding(w, i), [randTensor([vocab, d], seed), ids]);
    }), RUNS);
    const ids = tensor([[1, 1, 1], [0, 1, 1]], { dtype: 'int32' });
    check((w, i) => embedding(w, i), [randTensor([3, 2], 3), ids]);
  });
});

describe('gradcheck: fused nn ops', () => {
  test('softmax and logSoftmax on any axis', () => {
    const arb = shapeArb(1, 3).chain((shape) => fc.tuple(fc.constant(shape), axisArb(shape.length), seedArb, fc.boolean()));
    fc.assert(fc.property(arb, ([shape, axis, seed, isLog]) => {
      check((x) => (isLog ? logSoftmax(x, axis) : softmax(x, axis)), [randTensor(shape, seed, { low: -3, high: 3 })]);
    }), RUNS);
  });
  test('crossEntropy (ignoreIndex, mean and sum)', () => {
    const arb = fc.record({
      lead: shapeArb(0, 2),
      classes: fc.integer({ min: 1, max: 5 }),
      reduction: fc.constantFrom('mean' as const, 'sum' as const),
      ignore: fc.constantFrom(-100, 0, 2),
      seed: seedArb,
    });
    fc.assert(fc.property(arb, ({ lead, classes, reduction, ignore, seed }) => {
      const rows = size(lead);
      const raw = randIndex(lead, classes, seed + 1).dataSync();
      // Mark every other target ignored, but keep at least one counted.
      const targets = Array.from(raw, (t, i) => (i % 2 === 1 ? -100 : t));
      if (ignore !== -100 && targets.every((t) => t === ignore || t === -100)) fc.pre(false);
      if (rows > 0 && targets.every((t) => t === ignore)) fc.pre(false);
      const t = tensor(targets.map((v) => (v === -100 ? ignore : v)), { shape: lead, dtype: 'int32' });
      check((logits, tg) => crossEntropy(logits, tg, { ignoreIndex: ignore, reduction }), [randTensor([...lead, classes], seed, { low: -3, high: 3 }), t]);
    }), RUNS);
  });
  test('layerNorm (with and without affine parameters)', () => {
    fc.assert(fc.property(shapeArb(0, 2), fc.integer({ min: 1, max: 6 }), seedArb, fc.boolean(), (lead, d, seed, affine) => {
      const x = randTensor([...lead, d], seed);
      if (affine) {
        check((t, w, b) => layerNorm(t, w, b, 1e-5), [x, randTensor([d], seed + 1), randTensor([d], seed + 2)]);
      } else {
        check((t) => layerNorm(t, null, null, 1e-5), [x]);
      }
    }), RUNS);
  });
  test('rmsNorm (with and without weight)', () => {
    fc.assert(fc.property(shapeArb(0, 2), fc.integer({ min: 1, max: 6 }), seedArb, fc.boolean(), (lead, d, seed, withWeight) => {
      const x = randTensor([...lead, d], seed);
      if (withWeight) check((t, w) => rmsNorm(t, w, 1e-6), [x, randTensor([d], seed + 1)]);
      else check((t) => rmsNorm(t, null, 1e-6), [x]);
    }), RUNS);
  });
  test('scaledDotProductAttention (causal and not, tq < tk for a KV cache)', () => {
    const arb = fc.record({
      lead: shapeArb(0, 2, 2),
      tq: fc.integer({ min: 1, max: 4 }),
      extra: fc.integer({ min: 0, max: 3 }),
      dk: fc.integer({ min: 1, max: 4 }),
      dv: fc.integer({ min: 1, max: 4 }),
      causal: fc.boolean(),
      scale: fc.option(fc.constantFrom(0.3, 1), { nil: undefined }),
      seed: seedArb,
    });
    fc.assert(fc.property(arb, ({ lead, tq, extra, dk, dv, causal, scale, seed }) => {
      const tk = tq + extra;
      const q = randTensor([...lead, tq, dk], seed);
      const k = randTensor([...lead, tk, dk], seed + 1);
      const v = randTensor([...lead, tk, dv], seed + 2);
      check((a, b, c) => scaledDotProductAttention(a, b, c, { causal, scale }), [q, k, v]);
    }), RUNS);
  });
  test('dropout at p = 0 and in eval mode is the identity (gradient passes through)', () => {
    fc.assert(fc.property(shapeArb(0, 3), seedArb, (shape, seed) => {
      check((x) => mul(dropout(x, 0), 2), [randTensor(shape, seed)]);
      check((x) => mul(dropout(x, 0.5, false), 2), [randTensor(shape, seed)]);
    }), { numRuns: 10 });
  });
  test('dropout with p > 0: gradient is the same mask (reseeded before every evaluation)', () => {
    fc.assert(fc.property(shapeArb(1, 3), seedArb, (shape, seed) => {
      check((x) => {
        manualSeed(seed);
        return dropout(x, 0.4);
      }, [randTensor(shape, seed)]);
    }), { numRuns: 10 });
  });
});

test('gradcheck reports a wrong gradient', () => {
  const x = randTensor([3], 1);
  // detach() cuts the graph, so autograd sees no gradient while finite differences see 2x.
  const report = gradcheck((t) => mul(t, t).detach().requiresGrad_(true), [x], { raise: false });
  assert.equal(report.ok, false);
  assert.match(report.failure ?? '', /gradcheck: input 0 \[3\] element \d+: analytic .* vs numeric/);
  assert.throws(() => gradcheck((t) => mul(t, t).detach().requiresGrad_(true), [x]), /gradcheck: input 0/);
});

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CpuBackend, broadcastShapes, sizeOf, stridesOf, type Backend, type BinaryOp, type UnaryOp } from '@lowrank/core';
import { lcg, mismatch, randArray, randInts, runOn, type Input } from './harness.ts';
import { announceModes, backendFor, modesUnderTest } from './modes.ts';

announceModes();

const cpu = new CpuBackend('cpu-parity');
const shapeArb = (minRank: number, maxRank: number, maxDim = 4): fc.Arbitrary<number[]> =>
  fc.array(fc.integer({ min: 1, max: maxDim }), { minLength: minRank, maxLength: maxRank });
const seedArb = fc.integer({ min: 1, max: 2 ** 31 - 1 });

/** One parity case: inputs, the kernel call, and the output sizes. */
interface Case {
  inputs: Input[];
  run: (be: Backend, d: unknown[]) => unknown | unknown[];
  sizes: number[];
  rtol?: number;
}

/** Broadcast partner of a shape: some axes set to 1, some leading axes dropped. */
function partner(shape: readonly number[], rnd: () => number): number[] {
  const drop = Math.floor(rnd() * (shape.length + 1));
  return shape.slice(drop).map((d) => (rnd() < 0.4 ? 1 : d));
}

const F = (n: number, rnd: () => number, lo = -2, hi = 2): Input => ({ values: randArray(n, rnd, lo, hi), dtype: 'float32' });
const I = (n: number, rnd: () => number, hi: number): Input => ({ values: randInts(n, rnd, hi), dtype: 'int32' });

const unaryOps: UnaryOp[] = ['neg', 'sqrt', 'exp', 'log', 'tanh', 'sigmoid', 'relu', 'gelu', 'silu'];
const binaryOps: BinaryOp[] = ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'eq', 'gt'];

/** Kernel name -> a generator of cases from (shape, seed); the webgpu browser test runs it too. */
export const table: Record<string, fc.Arbitrary<Case>> = {
  fill: fc.tuple(shapeArb(0, 3), fc.double({ min: -5, max: 5, noNaN: true })).map(([s, v]) => ({
    inputs: [], run: (be) => be.fill({ inputs: {}, attrs: { size: sizeOf(s), value: v, dtype: 'float32' } }), sizes: [sizeOf(s)],
  })),
  cast: fc.tuple(shapeArb(1, 3), seedArb).map(([s, seed]) => ({
    inputs: [F(sizeOf(s), lcg(seed), -9, 9)], run: (be, [x]) => be.cast({ inputs: { x }, attrs: { size: sizeOf(s), to: 'int32' } }), sizes: [sizeOf(s)],
  })),
  unary: fc.tuple(shapeArb(1, 3), fc.constantFrom(...unaryOps), seedArb).map(([s, op, seed]) => ({
    inputs: [F(sizeOf(s), lcg(seed), op === 'sqrt' || op === 'log' ? 0.1 : -3, 3)],
    run: (be, [x]) => be.unary({ inputs: { x }, attrs: { op, size: sizeOf(s) } }), sizes: [sizeOf(s)],
  })),
  unaryGrad: fc.tuple(shapeArb(1, 3), fc.constantFrom(...unaryOps), seedArb).map(([s, op, seed]) => {
    const rnd = lcg(seed);
    const n = sizeOf(s);
    return {
      inputs: [F(n, rnd, 0.1, 3), F(n, rnd, 0.1, 1), F(n, rnd)],
      run: (be, [x, y, dy]) => be.unaryGrad({ inputs: { x, y, dy }, attrs: { op, size: n } }), sizes: [n],
    };
  }),
  affine: fc.tuple(shapeArb(1, 3), seedArb).map(([s, seed]) => ({
    inputs: [F(sizeOf(s), lcg(seed))], run: (be, [x]) => be.affine({ inputs: { x }, attrs: { size: sizeOf(s), scale: -1.5, shift: 0.25 } }), sizes: [sizeOf(s)],
  })),
  powScalar: fc.tuple(shapeArb(1, 3), fc.constantFrom(2, 3, -1, 0.5), seedArb).map(([s, e, seed]) => ({
    inputs: [F(sizeOf(s), lcg(seed), e === 0.5 ? 0.1 : 0.3, 2)], run: (be, [x]) => be.powScalar({ inputs: { x }, attrs: { size: sizeOf(s), exponent: e } }), sizes: [sizeOf(s)],
  })),
  binary: fc.tuple(shapeArb(1, 4), fc.constantFrom(...binaryOps), seedArb, fc.boolean()).map(([s, op, seed, swap]) => {
    const rnd = lcg(seed);
    const p = partner(s, rnd);
    const [as, bs] = swap ? [p, s] : [s, p];
    const out = broadcastShapes('binary', as, bs);
    const lo = op === 'pow' || op === 'div' ? 0.5 : -2;
    return {
      inputs: [F(sizeOf(as), rnd, lo, 2), F(sizeOf(bs), rnd, lo, 2)],
      run: (be, [a, b]) => be.binary({ inputs: { a, b }, attrs: { op, aShape: as, bShape: bs, outShape: out } }), sizes: [sizeOf(out)],
    };
  }),
  where: fc.tuple(shapeArb(1, 3), seedArb).map(([s, seed]) => {
    const rnd = lcg(seed);
    const cs = partner(s, rnd);
    const bs = partner(s, rnd);
    const out = broadcastShapes('where', cs, s, bs);
    return {
      inputs: [I(sizeOf(cs), rnd, 2), F(sizeOf(s), rnd), F(sizeOf(bs), rnd)],
      run: (be, [c, a, b]) => be.where({ inputs: { cond: c, a, b }, attrs: { cShape: cs, aShape: s, bShape: bs, outShape: out } }), sizes: [sizeOf(out)],
    };
  }),
  reduce: fc.tuple(shapeArb(1, 4), fc.constantFrom('sum' as const, 'max' as const), seedArb).map(([s, op, seed]) => {
    const rnd = lcg(seed);
    const axes = s.map((_, i) => i).filter(() => rnd() < 0.5);
    if (axes.length === 0) axes.push(s.length - 1);
    const kept = sizeOf(s.filter((_, i) => !axes.includes(i)));
    return { inputs: [F(sizeOf(s), rnd)], run: (be, [x]) => be.reduce({ inputs: { x }, attrs: { op, shape: s, axes } }), sizes: [kept] };
  }),
  matmul: fc.tuple(shapeArb(0, 2, 3), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }),
    fc.boolean(), fc.boolean(), fc.boolean(), seedArb).map(([batch, m, n, k, ta, tb, withBias, seed]) => {
    const rnd = lcg(seed);
    const ab = partner(batch, rnd);
    const as = [...ab, ...(ta ? [k, m] : [m, k])];
    const bs = [...batch, ...(tb ? [n, k] : [k, n])];
    const out = [...batch, m, n];
    // 2-D outputs also take alpha and a low-rank epilogue (a LoRA linear) half the time.
    const r = 1 + Math.floor(rnd() * 3);
    const tw = rnd() < 0.5;
    const low = batch.length === 0 && rnd() < 0.5 ? { r, transW: tw, scale: 0.5 + rnd() } : null;
    const alpha = low ? -1 + 3 * rnd() : undefined;
    const extra = low ? [F(m * r, rnd), F(n * r, rnd)] : [];
    return {
      inputs: [F(sizeOf(as), rnd), F(sizeOf(bs), rnd), ...(withBias ? [F(n, rnd)] : []), ...extra],
      run: (be, [a, b, ...rest]) => be.matmul({
        inputs: { a, b, bias: withBias ? rest[0] : null, h: low ? rest[withBias ? 1 : 0] : null, w: low ? rest[withBias ? 2 : 1] : null },
        attrs: { aShape: as, bShape: bs, transA: ta, transB: tb, outShape: out, alpha, lowRank: low },
      }), sizes: [sizeOf(out)],
    };
  }),
  strided: fc.tuple(shapeArb(1, 4), seedArb).map(([s, seed]) => {
    const rnd = lcg(seed);
    const perm = s.map((_, i) => i).sort(() => rnd() - 0.5);
    const st = stridesOf(s);
    const out = perm.map((a) => s[a]);
    return {
      inputs: [F(sizeOf(s), rnd)], run: (be, [x]) => be.strided({ inputs: { x }, attrs: { outShape: out, strides: perm.map((a) => st[a]), offset: 0 } }), sizes: [sizeOf(out)],
    };
  }),
  stridedAdd: fc.tuple(shapeArb(1, 3, 5), seedArb).map(([s, seed]) => {
    // A strided slice (start, step) per axis, as slice's backward issues it.
    const rnd = lcg(seed);
    const st = stridesOf(s);
    let offset = 0;
    const dyShape: number[] = [];
    const strides: number[] = [];
    s.forEach((d, a) => {
      const start = Math.floor(rnd() * d);
      const step = 1 + Math.floor(rnd() * 2);
      dyShape.push(Math.max(1, Math.ceil((d - start) / step)));
      offset += start * st[a];
      strides.push(st[a] * step);
    });
    return {
      inputs: [F(sizeOf(dyShape), rnd)],
      run: (be, [dy]) => be.stridedAdd({ inputs: { dy }, attrs: { dyShape, strides, offset, outSize: sizeOf(s) } }), sizes: [sizeOf(s)],
    };
  }),
  concat: fc.tuple(shapeArb(1, 3), fc.integer({ min: 1, max: 9 }), seedArb).map(([s, count, seed]) => {
    const rnd = lcg(seed);
    const axis = Math.floor(rnd() * s.length);
    const shapes = Array.from({ length: count }, () => s.map((d, a) => (a === axis ? 1 + Math.floor(rnd() * 3) : d)));
    const out = s.map((d, a) => (a === axis ? shapes.reduce((t, x) => t + x[axis], 0) : d));
    return {
      inputs: shapes.map((x) => F(sizeOf(x), rnd)),
      run: (be, xs) => be.concat({ inputs: { xs }, attrs: { shapes, axis, outShape: out } }), sizes: [sizeOf(out)],
    };
  }),
  gather: fc.tuple(shapeArb(1, 3), seedArb).map(([s, seed]) => {
    const rnd = lcg(seed);
    const axis = Math.floor(rnd() * s.length);
    const is = s.map((d, a) => (a === axis ? 1 + Math.floor(rnd() * 4) : d));
    return {
      inputs: [F(sizeOf(s), rnd), I(sizeOf(is), rnd, s[axis])],
      run: (be, [x, i]) => be.gather({ inputs: { x, index: i }, attrs: { xShape: s, indexShape: is, axis } }), sizes: [sizeOf(is)],
    };
  }),
  scatterAdd: fc.tuple(shapeArb(1, 3), seedArb).map(([s, seed]) => {
    const rnd = lcg(seed);
    const axis = Math.floor(rnd() * s.length);
    const is = s.map((d, a) => (a === axis ? 1 + Math.floor(rnd() * 4) : d));
    return {
      inputs: [F(sizeOf(is), rnd), I(sizeOf(is), rnd, s[axis])],
      run: (be, [dy, i]) => be.scatterAdd({ inputs: { dy, index: i }, attrs: { indexShape: is, axis, outShape: s } }), sizes: [sizeOf(s)],
    };
  }),
  indexSelect: fc.tuple(shapeArb(1, 3), fc.integer({ min: 1, max: 6 }), seedArb).map(([s, count, seed]) => {
    const rnd = lcg(seed);
    const axis = Math.floor(rnd() * s.length);
    const out = sizeOf(s) / s[axis] * count;
    return {
      inputs: [F(sizeOf(s), rnd), I(count, rnd, s[axis])],
      run: (be, [x, i]) => be.indexSelect({ inputs: { x, index: i }, attrs: { xShape: s, count, axis } }), sizes: [out],
    };
  }),
  indexAdd: fc.tuple(shapeArb(1, 3), fc.integer({ min: 1, max: 6 }), seedArb).map(([s, count, seed]) => {
    const rnd = lcg(seed);
    const axis = Math.floor(rnd() * s.length);
    const dySize = sizeOf(s) / s[axis] * count;
    return {
      inputs: [F(dySize, rnd), I(count, rnd, s[axis])],
      run: (be, [dy, i]) => be.indexAdd({ inputs: { dy, index: i }, attrs: { count, axis, xShape: s } }), sizes: [sizeOf(s)],
    };
  }),
  softmax: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 7 }), fc.boolean(), seedArb).map(([r, c, log, seed]) => ({
    inputs: [F(r * c, lcg(seed), -30, 30)], run: (be, [x]) => be.softmax({ inputs: { x }, attrs: { rows: r, cols: c, log } }), sizes: [r * c],
  })),
  softmaxGrad: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 7 }), fc.boolean(), seedArb).map(([r, c, log, seed]) => {
    const rnd = lcg(seed);
    return { inputs: [F(r * c, rnd, -2, 0), F(r * c, rnd)], run: (be, [y, dy]) => be.softmaxGrad({ inputs: { y, dy }, attrs: { rows: r, cols: c, log } }), sizes: [r * c] };
  }),
  crossEntropy: fc.tuple(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 6 }), fc.constantFrom('mean' as const, 'sum' as const), seedArb)
    .map(([r, c, red, seed]) => {
      const rnd = lcg(seed);
      const t = randInts(r, rnd, c);
      if (r > 1) t[r - 1] = -100;
      return {
        inputs: [F(r * c, rnd, -4, 4), { values: t, dtype: 'int32' as const }, F(1, rnd)],
        run: (be, [x, tg, dy]) => {
          const attrs = { rows: r, cols: c, ignoreIndex: -100, reduction: red };
          return [be.crossEntropy({ inputs: { logits: x, targets: tg }, attrs }), be.crossEntropyGrad({ inputs: { logits: x, targets: tg, dy }, attrs })];
        },
        sizes: [1, r * c],
      };
    }),
  layerNorm: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 2, max: 8 }), fc.boolean(), seedArb).map(([r, c, affine, seed]) => {
    const rnd = lcg(seed);
    return {
      // With an affine norm, dx also takes an addend (the gradient summed so far).
      inputs: [F(r * c, rnd), F(c, rnd), F(c, rnd), F(r * c, rnd), F(r * c, rnd)],
      run: (be, [x, w, b, dy, add]) => {
        const f = be.layerNorm({ inputs: { x, w: affine ? w : null, b: affine ? b : null }, attrs: { rows: r, cols: c, eps: 1e-5 } });
        const g = be.layerNormGrad({
          inputs: { x, w: affine ? w : null, mean: f.mean, rstd: f.rstd, dy, addend: affine ? add : null },
          attrs: { rows: r, cols: c, need: { x: true, w: true, b: true } },
        });
        return [f.y, f.mean, f.rstd, g.dx, g.dw, g.db];
      },
      sizes: [r * c, r, r, r * c, c, c],
      rtol: 1e-3,
    };
  }),
  rmsNorm: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 8 }), fc.boolean(), seedArb).map(([r, c, affine, seed]) => {
    const rnd = lcg(seed);
    return {
      inputs: [F(r * c, rnd), F(c, rnd), F(r * c, rnd), F(r * c, rnd)],
      run: (be, [x, w, dy, add]) => {
        const f = be.rmsNorm({ inputs: { x, w: affine ? w : null }, attrs: { rows: r, cols: c, eps: 1e-6 } });
        const g = be.rmsNormGrad({
          inputs: { x, w: affine ? w : null, rstd: f.rstd, dy, addend: affine ? add : null }, attrs: { rows: r, cols: c, need: { x: true, w: true } },
        });
        return [f.y, f.rstd, g.dx, g.dw];
      },
      sizes: [r * c, r, r * c, c],
      rtol: 1e-3,
    };
  }),
  attention: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: 2 }),
    fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.boolean(), seedArb).map(([bh, tq, extra, dk, dv, causal, seed]) => {
    const rnd = lcg(seed);
    const tk = tq + extra;
    return {
      inputs: [F(bh * tq * dk, rnd), F(bh * tk * dk, rnd), F(bh * tk * dv, rnd), F(bh * tq * dv, rnd)],
      run: (be, [q, k, v, dout]) => {
        // A third of the cases read [B, T, heads, D] (heads = bh, B = 1; or heads 1).
        const heads = seed % 3 === 0 ? undefined : seed % 3 === 1 ? bh : 1;
        const attrs = { bh, tq, tk, dk, dv, scale: 0.7, causal, heads };
        const f = be.attention({ inputs: { q, k, v }, attrs });
        const g = be.attentionGrad({ inputs: { q, k, v, out: f.out, lse: f.lse, dout }, attrs: { ...attrs, need: { q: true, k: true, v: true } } });
        return [f.out, f.lse, g.dq, g.dk, g.dv];
      },
      sizes: [bh * tq * dv, bh * tq, bh * tq * dk, bh * tk * dk, bh * tk * dv],
      rtol: 1e-3,
    };
  }),
  adamUpdate: fc.tuple(shapeArb(1, 2, 6), fc.boolean(), fc.integer({ min: 1, max: 50 }), seedArb).map(([s, decoupled, step, seed]) => {
    const rnd = lcg(seed);
    const n = sizeOf(s);
    const h = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, step, decoupled };
    return {
      inputs: [F(n, rnd), F(n, rnd), F(n, rnd, -0.1, 0.1), F(n, rnd, 0.001, 0.1)],
      run: (be, [p, g, m, v]) => {
        const r = be.adamUpdate({ inputs: { p, g, m, v }, attrs: { size: n, hyper: h } });
        return [r.p, r.m, r.v];
      },
      sizes: [n, n, n],
    };
  }),
};

for (const mode of modesUnderTest) {
  describe(`gpu kernels match cpu (${mode})`, () => {
    test(`backend runs ${mode}`, () => assert.equal(backendFor(mode).mode, mode));
    const numRuns = mode === 'webasm' ? 8 : 4;
    for (const [name, arb] of Object.entries(table)) {
      test(name, () => {
        const be = backendFor(mode);
        fc.assert(
          fc.property(arb, (c) => {
            const got = runOn(be, c.inputs, c.run, c.sizes);
            const want = runOn(cpu, c.inputs, c.run, c.sizes);
            got.forEach((g, i) => {
              const m = mismatch(g, want[i], c.rtol ?? 2e-4);
              assert.equal(m, null, `${name} output ${i}: ${m}`);
            });
          }),
          { numRuns, seed: 42 },
        );
        assert.equal(be.degradedKernels, 0, 'a kernel silently ran in another gpu.js mode');
      });
    }
  });
}

test('every Kernels entry has a parity case', () => {
  const kernels = Object.getOwnPropertyNames(CpuBackend.prototype).filter(
    (k) => !['constructor', 'bytesPerElement', 'upload', 'download', 'free', 'checkIndex', 'dispose', 'threads', 'allocHalf'].includes(k),
  );
  const covered = new Set([
    ...Object.keys(table), 'crossEntropyGrad', 'layerNormGrad', 'rmsNormGrad', 'attentionGrad',
  ]);
  assert.deepEqual(kernels.filter((k) => !covered.has(k)), []);
});

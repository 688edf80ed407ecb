import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend, sizeOf, type Backend } from '@lowrank/core';
import { patchFragmentShader } from '../../packages/core/src/backends/gpu/shader-patch.ts';
import { lcg, mismatch, randArray, runOn } from './harness.ts';
import { announceModes, backendFor, modesUnderTest } from './modes.ts';

announceModes();

const cpu = new CpuBackend('cpu-matmul');

/** [aShape, bShape, transA, transB, outShape, bias]: aligned, ragged K and M, broadcast batches. */
const CASES: [number[], number[], boolean, boolean, number[], boolean][] = [
  [[64, 32], [48, 32], false, true, [64, 48], true],
  [[64, 32], [32, 48], false, false, [64, 48], false],
  [[32, 64], [32, 48], true, false, [64, 48], false],
  [[32, 64], [48, 32], true, true, [64, 48], true],
  [[7, 5], [5, 12], false, false, [7, 12], true],
  [[7, 5], [12, 5], false, true, [7, 12], false],
  [[5, 7], [5, 12], true, false, [7, 12], false],
  [[5, 7], [12, 5], true, true, [7, 12], true],
  [[3, 5, 7], [3, 7, 8], false, false, [3, 5, 8], false],
  [[2, 3, 9, 6], [3, 4, 9], true, true, [2, 3, 6, 4], false],
  [[1, 1], [1, 4], false, false, [1, 4], false],
  [[6, 3], [3, 5], false, false, [6, 5], true], // N % 4 != 0: the generic kernel
];

for (const mode of modesUnderTest) {
  describe(`gpu matmul (${mode})`, () => {
    test('matches cpu on aligned, ragged-K, ragged-M, transposed and broadcast shapes', () => {
      const be = backendFor(mode);
      const rnd = lcg(11);
      for (const [as, bs, ta, tb, out, bias] of CASES) {
        const n = out[out.length - 1];
        const inputs = [
          { values: randArray(sizeOf(as), rnd), dtype: 'float32' as const },
          { values: randArray(sizeOf(bs), rnd), dtype: 'float32' as const },
          ...(bias ? [{ values: randArray(n, rnd), dtype: 'float32' as const }] : []),
        ];
        const run = (b: Backend, d: unknown[]) => b.matmul({
          inputs: { a: d[0], b: d[1], bias: bias ? d[2] : null }, attrs: { aShape: as, bShape: bs, transA: ta, transB: tb, outShape: out },
        });
        const [g] = runOn(be, inputs, run, [sizeOf(out)]);
        const [c] = runOn(cpu, inputs, run, [sizeOf(out)]);
        const bad = mismatch(g, c);
        assert.equal(bad, null, `matmul ${JSON.stringify(as)} x ${JSON.stringify(bs)} transA=${ta} transB=${tb} bias=${bias}: ${bad}`);
      }
      if (mode === 'headlessgl') assert.ok((be.dispatchCounts.get('matmul4') ?? 0) > 0, 'the packed GL matmul never ran');
    });

    test('alpha, the low-rank epilogue (a LoRA linear) and an addend match cpu, packed and generic', () => {
      const be = backendFor(mode);
      const rnd = lcg(23);
      // [M, K, N, r (0: none), transB, transW, alpha, bias, addend]: aligned, ragged M/K/r, N % 4 != 0 (generic kernel), 2-D outputs.
      const cases: [number, number, number, number, boolean, boolean, number | undefined, boolean, boolean][] = [
        [64, 32, 48, 8, true, true, undefined, true, false],
        [64, 32, 48, 8, false, false, 1, false, true],
        [7, 5, 12, 3, true, false, 0.5, true, true],
        [9, 6, 8, 1, false, true, -2, false, false],
        [5, 7, 6, 2, true, true, 1.5, true, true],
        [6, 5, 8, 0, true, false, undefined, true, true],
        [6, 5, 7, 0, false, false, 2, false, true],
      ];
      for (const [m, k, n, r, tb, tw, alpha, bias, addend] of cases) {
        const bs = tb ? [n, k] : [k, n];
        const ws = tw ? [n, r] : [r, n];
        const lens = [m * k, sizeOf(bs), ...(bias ? [n] : []), ...(r ? [m * r, sizeOf(ws)] : []), ...(addend ? [m * n] : [])];
        const inputs = lens.map((len) => ({ values: randArray(len, rnd), dtype: 'float32' as const }));
        const run = (x: Backend, d: unknown[]) => {
          const rest = d.slice(2);
          const take = (on: boolean): unknown => (on ? rest.shift() : null);
          const [biasD, h, w, add] = [take(bias), take(r > 0), take(r > 0), take(addend)];
          return x.matmul({
            inputs: { a: d[0], b: d[1], bias: biasD, h, w, addend: add },
            attrs: { aShape: [m, k], bShape: bs, transA: false, transB: tb, outShape: [m, n], alpha, lowRank: r ? { r, transW: tw, scale: 0.75 } : null },
          });
        };
        const [g] = runOn(be, inputs, run, [m * n]);
        const [c] = runOn(cpu, inputs, run, [m * n]);
        const bad = mismatch(g, c);
        assert.equal(bad, null, `matmul [${m}, ${k}] x ${JSON.stringify(bs)} + h [${m}, ${r}] w ${JSON.stringify(ws)} alpha=${alpha} bias=${bias} addend=${addend}: ${bad}`);
      }
    });

    test('the GELU prologue and the GELU-gradient epilogue (with an addend) match cpu, packed and generic', () => {
      const be = backendFor(mode);
      const rnd = lcg(31);
      // [M, K, N, transB, addend]: aligned, ragged K and M (masked lanes after GELU), N % 4 != 0 (generic).
      const cases: [number, number, number, boolean, boolean][] = [[64, 32, 48, true, false], [7, 5, 12, false, true], [9, 6, 8, true, true], [5, 7, 6, false, true]];
      for (const [m, k, n, tb, addend] of cases) {
        const bs = tb ? [n, k] : [k, n];
        const fwdIn = [m * k, sizeOf(bs)].map((len) => ({ values: randArray(len, rnd, -4, 4), dtype: 'float32' as const }));
        const fwd = (x: Backend, d: unknown[]) => x.matmul({
          inputs: { a: d[0], b: d[1] }, attrs: { aShape: [m, k], bShape: bs, transA: false, transB: tb, outShape: [m, n], aAct: 'gelu' },
        });
        const [gf, cf] = [runOn(be, fwdIn, fwd, [m * n])[0], runOn(cpu, fwdIn, fwd, [m * n])[0]];
        assert.equal(mismatch(gf, cf), null, `gelu(a) @ b [${m}, ${k}] x ${JSON.stringify(bs)}`);
        // dx = (dY @ W) * gelu'(at) (+ addend): dY [m, k], W [k, n] or [n, k], at [m, n].
        const bwdIn = [m * k, sizeOf(bs), m * n, ...(addend ? [m * n] : [])].map((len) => ({ values: randArray(len, rnd, -4, 4), dtype: 'float32' as const }));
        const bwd = (x: Backend, d: unknown[]) => x.matmul({
          inputs: { a: d[0], b: d[1], at: d[2], addend: addend ? d[3] : null },
          attrs: { aShape: [m, k], bShape: bs, transA: false, transB: tb, outShape: [m, n], gradOf: 'gelu' },
        });
        const [gb, cb] = [runOn(be, bwdIn, bwd, [m * n])[0], runOn(cpu, bwdIn, bwd, [m * n])[0]];
        assert.equal(mismatch(gb, cb), null, `(dY @ W) * gelu'(at) [${m}, ${k}] x ${JSON.stringify(bs)} addend=${addend}`);
      }
    });

    test('an Inf beside the data never leaks into a masked lane as NaN', () => {
      const be = backendFor(mode);
      // a [3, 5] whose row 1 is Inf, times b [5, 4]: rows 0 and 2 stay finite (their windows overlap row 1's texels).
      const a = randArray(15, lcg(5));
      for (let j = 5; j < 10; j++) a[j] = Infinity;
      const b = randArray(20, lcg(6), 0.5, 2);
      const run = (x: Backend, d: unknown[]) => x.matmul({ inputs: { a: d[0], b: d[1] }, attrs: { aShape: [3, 5], bShape: [5, 4], transA: false, transB: false, outShape: [3, 4] } });
      const inputs = [{ values: a, dtype: 'float32' as const }, { values: b, dtype: 'float32' as const }];
      const [g] = runOn(be, inputs, run, [12]);
      const [c] = runOn(cpu, inputs, run, [12]);
      assert.equal(mismatch(g, c), null);
      for (const i of [0, 1, 2, 3, 8, 9, 10, 11]) assert.ok(Number.isFinite(g[i]), `out[${i}] = ${g[i]}`);
    });
  });
}

describe('GL shader patch', () => {
  test('texel, channel and thread addressing divide by a float reciprocal, corrected in integers', () => {
    const template = [
      'ivec3 indexTo3D(int idx, ivec3 texDim) {\n  int z = int(idx / (texDim.x * texDim.y));\n  return ivec3(0, 0, z);\n}',
      'float getMemoryOptimized32(sampler2D tex, ivec2 texSize, ivec3 texDim, int z, int y, int x) {',
      '  int index = x + texDim.x * (y + texDim.y * z);',
      '  int channel = integerMod(index, 4);',
      '  index = index / 4;',
      '  int w = texSize.x;',
      '  vec2 st = vec2(float(integerMod(index, w)), float(index / w)) + 0.5;',
      '}',
    ].join('\n');
    const { source, sites } = patchFragmentShader(template);
    assert.equal(sites, 3);
    assert.ok(!source.includes('index / w') && !source.includes('integerMod(index'), source);
    assert.ok(!/idx \//.test(source), source);
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  add, cast, embedding, layerNorm, linear, matmul, memory, randn, tensor, zeros, type Tensor,
} from '@lowrank/core';
import {
  bf16BitsToNumber, f16BitsToNumber, toBF16Bits, toF16Bits,
} from '../../packages/core/src/backends/cpu/half.ts';

const sameBits = (a: ArrayLike<number>, b: ArrayLike<number>): boolean =>
  a.length === b.length && Array.from(a).every((v, i) => Object.is(v, b[i]));

/** A float32 tensor holding exactly the values of t's 16-bit rounding. */
const roundedCopy = (t: Tensor, dtype: 'bfloat16' | 'float16'): Tensor => {
  const h = cast(t, dtype);
  const f = cast(h, 'float32');
  h.dispose();
  return f;
};

describe('16-bit conversions', () => {
  test('every float16 bit pattern survives widening and rounding back (NaNs stay NaN)', () => {
    for (let h = 0; h < 65536; h++) {
      const v = f16BitsToNumber(h);
      if (Number.isNaN(v)) assert.ok(Number.isNaN(f16BitsToNumber(toF16Bits(v))));
      else assert.equal(toF16Bits(v), h, `bits ${h.toString(16)}`);
    }
  });

  test('every bfloat16 bit pattern survives widening and rounding back', () => {
    for (let h = 0; h < 65536; h++) {
      const v = bf16BitsToNumber(h);
      if (Number.isNaN(v)) assert.ok(Number.isNaN(bf16BitsToNumber(toBF16Bits(v))));
      else assert.equal(toBF16Bits(v), h);
    }
  });

  test('rounding is to the nearest value, ties to even', () => {
    fc.assert(fc.property(fc.float({ noNaN: true, noDefaultInfinity: true, min: -6e4, max: 6e4 }), (x) => {
      for (const [round, widen] of [[toBF16Bits, bf16BitsToNumber], [toF16Bits, f16BitsToNumber]] as const) {
        const h = round(x);
        const v = widen(h);
        const up = widen(h + 1 >= 0x10000 ? h : h + 1);
        const down = widen(h === 0 || h === 0x8000 ? h : h - 1);
        assert.ok(Math.abs(v - x) <= Math.abs(up - x) && Math.abs(v - x) <= Math.abs(down - x), `${x} -> ${v}`);
      }
    }));
    assert.equal(bf16BitsToNumber(toBF16Bits(1 + 2 ** -8)), 1); // tie: to the even mantissa
    assert.equal(bf16BitsToNumber(toBF16Bits(1 + 3 * 2 ** -8)), 1 + 2 ** -6);
    assert.equal(f16BitsToNumber(toF16Bits(70000)), Infinity);
    assert.equal(f16BitsToNumber(toF16Bits(2 ** -24)), 2 ** -24); // the smallest subnormal
  });
});

describe('bfloat16 / float16 tensors on the cpu backend', () => {
  for (const dtype of ['bfloat16', 'float16'] as const) {
    test(`${dtype}: values are rounded, read back widened, and memory counts 2 bytes each`, () => {
      const before = memory().liveBytes;
      const t = tensor([[1, 1 / 3], [-2.5, 1000.1]], { dtype });
      assert.equal(memory().liveBytes - before, 8);
      const round = dtype === 'bfloat16' ? toBF16Bits : toF16Bits;
      const widen = dtype === 'bfloat16' ? bf16BitsToNumber : f16BitsToNumber;
      assert.deepEqual(Array.from(t.dataSync()), [1, 1 / 3, -2.5, 1000.1].map((v) => widen(round(v))));
      t.dispose();
      const meta = zeros([1000, 10], { dtype, backend: 'meta' });
      assert.equal(meta.storage.bytes, 20000);
      meta.dispose();
    });

    test(`${dtype}: matmul and linear with a 16-bit weight give the bits of its float32 rounding`, () => {
      for (const [n, k, out] of [[3, 5, 4], [64, 96, 80], [130, 200, 72]]) {
        const x = randn([n, k]);
        const w = randn([out, k]);
        const bias = randn([out]);
        const wh = cast(w, dtype);
        const wf = roundedCopy(w, dtype);
        assert.ok(sameBits(linear(x, wh, bias).dataSync(), linear(x, wf, bias).dataSync()), `linear ${n}x${k}x${out}`);
        const wt = randn([k, out]);
        const wth = cast(wt, dtype);
        assert.ok(sameBits(matmul(x, wth).dataSync(), matmul(x, roundedCopy(wt, dtype)).dataSync()), `matmul ${n}x${k}x${out}`);
        assert.ok(sameBits(matmul(x, wh, { transposeB: true }).dataSync(), matmul(x, wf, { transposeB: true }).dataSync()));
      }
    });

    test(`${dtype}: embedding rows are widened; the gradient reaches a float32 input through a 16-bit weight`, () => {
      const table = randn([11, 6]);
      const ids = tensor([[3, 0, 10], [3, 7, 1]], { dtype: 'int32' });
      const half = cast(table, dtype);
      assert.ok(sameBits(embedding(half, ids).dataSync(), embedding(roundedCopy(table, dtype), ids).dataSync()));
      const x = randn([4, 6], { requiresGrad: true });
      const w = cast(randn([5, 6]), dtype);
      linear(x, w).sum().backward();
      const x2 = tensor(x.dataSync(), { shape: [4, 6], requiresGrad: true });
      linear(x2, cast(w, 'float32')).sum().backward();
      assert.ok(sameBits(x.grad!.dataSync(), x2.grad!.dataSync()));
    });

    test(`${dtype}: other ops, gradients and a 16-bit first matmul operand are clear errors`, () => {
      const h = cast(randn([4, 4]), dtype);
      assert.throws(() => add(h, h), new RegExp(`add: expected a float32 tensor, got ${dtype}\\[4, 4\\].*cast\\(x, 'float32'\\)`));
      assert.throws(() => layerNorm(h, null, null), /layerNorm: expected a float32 tensor/);
      assert.throws(() => matmul(h, randn([4, 4])), /matmul: expected a float32 tensor/);
      assert.throws(() => h.requiresGrad_(true), /requiresGrad_: only float32 tensors can require gradients/);
      assert.throws(() => randn([2, 2], { requiresGrad: true }).castTo_(dtype), /castTo_: .* requires gradients/);
    });
  }

  test('castTo_ converts in place, keeping identity; float32 widens back', () => {
    const w = randn([8, 3]);
    const values = w.dataSync();
    const before = memory().liveBytes;
    w.castTo_('bfloat16');
    assert.equal(w.dtype, 'bfloat16');
    assert.equal(memory().liveBytes - before, -48);
    w.castTo_('float32');
    assert.ok(sameBits(w.dataSync(), Array.from(values, (v) => bf16BitsToNumber(toBF16Bits(v)))));
  });
});

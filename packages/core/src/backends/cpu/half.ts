/**
 * 16-bit float storage on the cpu backend: the raw bits in a Uint16Array
 * subclass, so a kernel can tell bfloat16 from float16 by the array alone.
 * Values widen to float32 where they are read (gemm packing, embedding rows).
 */
export class BF16Array extends Uint16Array {}
export class F16Array extends Uint16Array {}
export type HalfArr = BF16Array | F16Array;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function isHalf(x: unknown): x is HalfArr {
  return x instanceof BF16Array || x instanceof F16Array;
}

/** float32 -> bfloat16 bits, rounding to nearest even (NaN stays a quiet NaN). */
export function toBF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToNumber(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

/** float32 -> IEEE half bits, rounding to nearest even; overflow to infinity, subnormals kept. */
export function toF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const man = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    // Subnormal half: shift the full mantissa (implicit 1 included) into place, round to even.
    const full = man | 0x800000;
    const shift = 14 - e;
    const q = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    return sign | (q + (rem > half || (rem === half && (q & 1)) ? 1 : 0));
  }
  const q = (e << 10) | (man >>> 13);
  const rem = man & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  return sign | (q + (rem > 0x1000 || (rem === 0x1000 && (q & 1)) ? 1 : 0));
}

export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * Rounds float values into a new 16-bit array of the given kind. A 16-bit
 * array passed as `values` holds bits, not numbers: of the same kind they
 * are copied (a bf16 checkpoint tensor goes into bf16 storage untouched),
 * of the other kind widened and rounded.
 */
export function toHalf(
  kind: 'bfloat16' | 'float16', values: ArrayLike<number>, size = values.length,
  out: HalfArr = kind === 'bfloat16' ? new BF16Array(size) : new F16Array(size),
): HalfArr {
  if (isHalf(values)) {
    if ((kind === 'bfloat16') === values instanceof BF16Array) out.set(values.subarray(0, size));
    else out.set(toHalf(kind, widen(values, size)));
    return out;
  }
  const round = kind === 'bfloat16' ? toBF16Bits : toF16Bits;
  for (let i = 0; i < size; i++) out[i] = round(values[i]);
  return out;
}

/** Widens x[from, from + count) into out[at, at + count). */
export function widenInto(x: HalfArr, from: number, count: number, out: Float32Array | Float64Array, at: number): void {
  if (x instanceof BF16Array) {
    for (let i = 0; i < count; i++) out[at + i] = bf16BitsToNumber(x[from + i]);
  } else {
    for (let i = 0; i < count; i++) out[at + i] = f16BitsToNumber(x[from + i]);
  }
}

/** A float32 copy of a 16-bit array (for the slow paths that need one for a moment). */
export function widen(x: HalfArr, size = x.length): Float32Array {
  const out = new Float32Array(size);
  widenInto(x, 0, size, out, 0);
  return out;
}

import { checkIndices } from '../checks.ts';
import type { KernelAttrs } from '../../backend.ts';
import { sizeOf, stridesOf } from '../../shape.ts';
import { forEachRow, type Args, type Arr, type CpuContext, type FArr } from './arrays.ts';
import { isHalf, widenInto, type HalfArr } from './half.ts';
import { runRows } from './rows.ts';

/** The cpu layout kernels: strided views and their adjoint, concat, gather/scatter, index select/add. */

/**
 * torch.gather's addressing: the flat offset in x (strides xs) of index
 * position i (strides is), with its coordinate on `axis` replaced by `j`.
 */
function alongAxisOffset(i: number, j: number, is: readonly number[], xs: readonly number[], axis: number): number {
  let offset = 0;
  let rem = i;
  for (let d = 0; d < is.length; d++) {
    const c = Math.floor(rem / is[d]);
    rem -= c * is[d];
    offset += (d === axis ? j : c) * xs[d];
  }
  return offset;
}

/** The last four entries of `v`, padded in front with `fill`. */
function pad4(v: readonly number[], fill: number): [number, number, number, number] {
  const out: [number, number, number, number] = [fill, fill, fill, fill];
  for (let i = 0; i < v.length; i++) out[4 - v.length + i] = v[i];
  return out;
}

export function strided(ctx: CpuContext, { inputs: { x }, attrs: { outShape, strides, offset } }: Args<'strided', Arr>): Arr {
  const out = x instanceof Int32Array ? new Int32Array(sizeOf(outShape)) : ctx.alloc(sizeOf(outShape));
  if (out.length === 0) return out;
  if (outShape.length <= 4) {
    // Up to 4-D (every permute in a transformer): plain nested loops, no odometer callbacks.
    const [n0, n1, n2, n3] = pad4(outShape, 1);
    const [s0, s1, s2, s3] = pad4(strides, 0);
    if (!(x instanceof Int32Array) && !isHalf(x)) {
      runRows('strided', 'stridedRows', [x, out as FArr], [n1, n2, n3, s0, s1, s2, s3, offset], n0 * n1 * n2, out.length);
      return out;
    }
    let o = 0;
    for (let a = 0; a < n0; a++) {
      for (let b = 0; b < n1; b++) {
        for (let c = 0; c < n2; c++) {
          const base = offset + a * s0 + b * s1 + c * s2;
          if (s3 === 1) for (let d = 0; d < n3; d++) out[o++] = x[base + d];
          else for (let d = 0; d < n3; d++) out[o++] = x[base + d * s3];
        }
      }
    }
    return out;
  }
  const cols = outShape[outShape.length - 1] ?? 1;
  const cs = strides[strides.length - 1] ?? 0;
  forEachRow(outShape, [strides], (row, [xo]) => {
    const o = row * cols;
    const base = offset + xo;
    if (cs === 1) for (let c = 0; c < cols; c++) out[o + c] = x[base + c];
    else for (let c = 0; c < cols; c++) out[o + c] = x[base + c * cs];
  });
  return out;
}

export function stridedAdd(ctx: CpuContext, { inputs: { dy }, attrs: { dyShape, strides, offset, outSize } }: Args<'stridedAdd'>): FArr {
  const out = ctx.alloc(outSize);
  if (sizeOf(dyShape) === 0) return out;
  const cols = dyShape[dyShape.length - 1] ?? 1;
  const cs = strides[strides.length - 1] ?? 0;
  forEachRow(dyShape, [strides], (row, [xo]) => {
    const o = row * cols;
    const base = offset + xo;
    for (let c = 0; c < cols; c++) out[base + c * cs] += dy[o + c];
  });
  return out;
}

export function concat(ctx: CpuContext, { inputs: { xs }, attrs: { shapes, axis, outShape } }: Args<'concat', Arr>): Arr {
  const total = sizeOf(outShape);
  const out = xs[0] instanceof Int32Array ? new Int32Array(total) : ctx.alloc(total);
  const outer = sizeOf(outShape.slice(0, axis));
  const outRow = sizeOf(outShape.slice(axis));
  let colOffset = 0;
  xs.forEach((x, i) => {
    const row = sizeOf(shapes[i].slice(axis));
    for (let o = 0; o < outer; o++) out.set(x.subarray(o * row, (o + 1) * row), o * outRow + colOffset);
    colOffset += row;
  });
  return out;
}

export function gather(ctx: CpuContext, { inputs: { x, index }, attrs: { xShape, indexShape, axis } }: { inputs: { x: FArr; index: Int32Array }; attrs: KernelAttrs<'gather'> }): FArr {
  const n = sizeOf(indexShape);
  checkIndices('gather', index, n, xShape[axis]);
  const out = ctx.alloc(n);
  const xs = stridesOf(xShape);
  const is = stridesOf(indexShape);
  for (let i = 0; i < n; i++) out[i] = x[alongAxisOffset(i, index[i], is, xs, axis)];
  return out;
}

export function scatterAdd(ctx: CpuContext, { inputs: { dy, index }, attrs: { indexShape, axis, outShape } }: { inputs: { dy: FArr; index: Int32Array }; attrs: KernelAttrs<'scatterAdd'> }): FArr {
  const out = ctx.alloc(sizeOf(outShape));
  const xs = stridesOf(outShape);
  const is = stridesOf(indexShape);
  const n = sizeOf(indexShape);
  for (let i = 0; i < n; i++) out[alongAxisOffset(i, index[i], is, xs, axis)] += dy[i];
  return out;
}

/** A 16-bit table's rows are widened as they are copied out (an embedding lookup on a bf16 base). */
export function indexSelect(ctx: CpuContext, { inputs: { x, index }, attrs: { xShape, count, axis } }: { inputs: { x: FArr | HalfArr; index: Int32Array }; attrs: KernelAttrs<'indexSelect'> }): FArr {
  const outer = sizeOf(xShape.slice(0, axis));
  const inner = sizeOf(xShape.slice(axis + 1));
  const n = xShape[axis];
  checkIndices('indexSelect', index, count, n);
  const out = ctx.alloc(outer * count * inner);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < count; i++) {
      const src = (o * n + index[i]) * inner;
      if (isHalf(x)) widenInto(x, src, inner, out, (o * count + i) * inner);
      else out.set(x.subarray(src, src + inner), (o * count + i) * inner);
    }
  }
  return out;
}

export function indexAdd(ctx: CpuContext, { inputs: { dy, index }, attrs: { count, axis, xShape } }: { inputs: { dy: FArr; index: Int32Array }; attrs: KernelAttrs<'indexAdd'> }): FArr {
  const outer = sizeOf(xShape.slice(0, axis));
  const inner = sizeOf(xShape.slice(axis + 1));
  const n = xShape[axis];
  const out = ctx.alloc(sizeOf(xShape));
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < count; i++) {
      const dst = (o * n + index[i]) * inner;
      const src = (o * count + i) * inner;
      for (let c = 0; c < inner; c++) out[dst + c] += dy[src + c];
    }
  }
  return out;
}

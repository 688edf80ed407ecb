import { checkIndices } from '../checks.ts';
import { sizeOf } from '../../shape.ts';
import type { Args, GpuContext, GpuData } from './context.ts';
import * as src from './sources.ts';

/** The gpu layout kernels: strided views and their adjoint, concat, gather/scatter, index select/add. */

export function strided(ctx: GpuContext, { inputs: { x }, attrs: { outShape, strides, offset } }: Args<'strided'>): GpuData {
  const host = x.host ? (ctx.host.strided({ inputs: { x: x.host }, attrs: { outShape, strides, offset } }) as Int32Array) : null;
  if (sizeOf(outShape) === 0) return ctx.wrap(null, 0, host);
  return ctx.run(src.strided(ctx.gen(), outShape, strides, offset), [x], host);
}

export function stridedAdd(ctx: GpuContext, { inputs: { dy }, attrs: { dyShape, strides, offset, outSize } }: Args<'stridedAdd'>): GpuData {
  if (sizeOf(dyShape) === 0) return ctx.zeros(outSize);
  if (!src.stridesNest(dyShape, strides) && sizeOf(dyShape) * outSize > 1e9) {
    throw new Error(`gpu backend: stridedAdd with overlapping strides ${JSON.stringify(strides)} over ${sizeOf(dyShape)} x ${outSize} cells is too large`);
  }
  return ctx.run(src.stridedAdd(ctx.gen(), dyShape, strides, offset, outSize), [dy]);
}

export function concat(ctx: GpuContext, { inputs: { xs }, attrs: { shapes, axis, outShape } }: Args<'concat'>): GpuData {
  const host = xs.every((x) => x.host)
    ? (ctx.host.concat({ inputs: { xs: xs.map((x) => x.host as Int32Array) }, attrs: { shapes, axis, outShape } }) as Int32Array)
    : null;
  if (sizeOf(outShape) === 0) return ctx.wrap(null, 0, host);
  const pieces: { x: GpuData; row: number; start: number }[] = [];
  let start = 0;
  xs.forEach((x, i) => {
    const row = sizeOf(shapes[i].slice(axis));
    if (sizeOf(shapes[i]) > 0) pieces.push({ x, row, start });
    start += row;
  });
  const GROUP = 6;
  let acc: GpuData | null = null;
  for (let p = 0; p < pieces.length; p += GROUP) {
    const group = pieces.slice(p, p + GROUP);
    const spec = src.concatGroup(ctx.gen(), group, outShape, axis, acc !== null);
    const args = [...(acc ? [acc] : []), ...group.map((g) => g.x)];
    const next = ctx.run(spec, args);
    ctx.tmpFree(acc);
    acc = next;
  }
  const out = acc ?? ctx.zeros(sizeOf(outShape));
  out.host = host;
  return out;
}

export function gather(ctx: GpuContext, { inputs: { x, index }, attrs: { xShape, indexShape, axis } }: Args<'gather'>): GpuData {
  const n = sizeOf(indexShape);
  if (n === 0) return ctx.wrap(null, 0);
  checkIndices('gather', ctx.hostInts(index, n), n, xShape[axis]);
  return ctx.run(src.gather(ctx.gen(), xShape, indexShape, axis), [x, index]);
}

export function scatterAdd(ctx: GpuContext, { inputs: { dy, index }, attrs: { indexShape, axis, outShape } }: Args<'scatterAdd'>): GpuData {
  if (sizeOf(indexShape) === 0) return ctx.zeros(sizeOf(outShape));
  return ctx.run(src.scatterAdd(ctx.gen(), indexShape, axis, outShape), [dy, index]);
}

export function indexSelect(ctx: GpuContext, { inputs: { x, index }, attrs: { xShape, count, axis } }: Args<'indexSelect'>): GpuData {
  const outSize = sizeOf(xShape.slice(0, axis)) * count * sizeOf(xShape.slice(axis + 1));
  if (count > 0) checkIndices('indexSelect', ctx.hostInts(index, count), count, xShape[axis]);
  if (outSize === 0) return ctx.wrap(null, 0);
  return ctx.run(src.indexSelect(ctx.gen(), xShape, count, axis), [x, index]);
}

export function indexAdd(ctx: GpuContext, { inputs: { dy, index }, attrs: { count, axis, xShape } }: Args<'indexAdd'>): GpuData {
  const n = xShape[axis];
  if (count === 0 || sizeOf(xShape) === 0) return ctx.zeros(sizeOf(xShape));
  // NOTE: a CSR of the indices (built on the host) turns the scatter into a
  // gather: each output row sums only the dy rows that point at it.
  const idx = ctx.hostInts(index, count);
  const starts = new Float32Array(n + 1);
  for (let i = 0; i < count; i++) if (idx[i] >= 0 && idx[i] < n) starts[idx[i] + 1]++;
  let maxDup = 0;
  for (let r = 0; r < n; r++) {
    maxDup = Math.max(maxDup, starts[r + 1]);
    starts[r + 1] += starts[r];
  }
  const fillAt = starts.slice(0, n);
  const perm = new Float32Array(Math.max(1, count));
  for (let i = 0; i < count; i++) if (idx[i] >= 0 && idx[i] < n) perm[fillAt[idx[i]]++] = i;
  if (maxDup === 0) return ctx.zeros(sizeOf(xShape));
  return ctx.run(src.indexAdd(ctx.gen(), xShape, count, axis, maxDup), [dy, starts, perm]);
}

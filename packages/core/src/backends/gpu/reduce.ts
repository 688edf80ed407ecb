import { sizeOf } from '../../shape.ts';
import type { Args, GpuContext, GpuData } from './context.ts';
import { fill } from './elementwise.ts';
import * as src from './sources.ts';

/** Trailing sums longer than this take two passes (chunk sums, then their sum). */
const CHUNKED_SUM = 4096;

export function reduce(ctx: GpuContext, { inputs: { x }, attrs: { op, shape, axes } }: Args<'reduce'>): GpuData {
  const keptSize = sizeOf(shape.filter((_, i) => !axes.includes(i)));
  const R = sizeOf(axes.map((a) => shape[a]));
  if (R === 0) return fill(ctx, { inputs: {}, attrs: { size: keptSize, value: op === 'sum' ? 0 : -Infinity, dtype: 'float32' } });
  const trailing = axes.every((a, i) => a === shape.length - axes.length + i);
  if (op === 'sum' && trailing && R > CHUNKED_SUM) {
    // NOTE: one float32 accumulator over 1e6 values drifts ~1%; sums of
    // sqrt(R)-long chunks, then of the chunk sums, stay near float32 epsilon.
    const chunk = Math.ceil(Math.sqrt(R));
    const parts = ctx.run(src.chunkSums(ctx.gen(), keptSize, R, chunk), [x]);
    const out = ctx.run(src.reduce(ctx.gen(), 'sum', [keptSize, Math.ceil(R / chunk)], [1]), [parts]);
    ctx.free(parts);
    return out;
  }
  return ctx.run(src.reduce(ctx.gen(), op, shape, axes), [x]);
}

import { countValidTargets } from '../checks.ts';
import type { Args, GpuContext, GpuData } from './context.ts';
import { fill } from './elementwise.ts';
import * as src from './sources.ts';

/** The gpu row kernels: softmax, cross-entropy, layerNorm and rmsNorm, forward and backward. */

export function softmax(ctx: GpuContext, { inputs: { x }, attrs: { rows, cols, log } }: Args<'softmax'>): GpuData {
  if (rows * cols === 0) return ctx.wrap(null, 0);
  if (cols <= src.ONE_PASS_COLS) return ctx.run(src.softmaxRows(ctx.gen(), rows, cols, log, true), [x]);
  const st = ctx.run(src.rowStats(ctx.gen(), rows, cols), [x]);
  const y = ctx.run(src.softmaxRows(ctx.gen(), rows, cols, log, false), [x, st]);
  ctx.free(st);
  return y;
}

export function softmaxGrad(ctx: GpuContext, { inputs: { y, dy }, attrs: { rows, cols, log } }: Args<'softmaxGrad'>): GpuData {
  if (rows * cols === 0) return ctx.wrap(null, 0);
  const s = ctx.run(src.softmaxGradRow(ctx.gen(), rows, cols, log), [y, dy]);
  const dx = ctx.run(src.softmaxGradApply(ctx.gen(), rows, cols, log), [y, dy, s]);
  ctx.free(s);
  return dx;
}

export function countValid(ctx: GpuContext, targets: GpuData, rows: number, cols: number, ignoreIndex: number): number {
  return countValidTargets(ctx.hostInts(targets, rows), rows, cols, ignoreIndex);
}

export function crossEntropy(ctx: GpuContext, { inputs: { logits, targets }, attrs: { rows, cols, ignoreIndex, reduction } }: Args<'crossEntropy'>): GpuData {
  const valid = countValid(ctx, targets, rows, cols, ignoreIndex);
  // PyTorch: a mean over zero valid targets is NaN.
  const mult = reduction === 'mean' ? (valid === 0 ? NaN : 1 / valid) : 1;
  if (rows === 0) return fill(ctx, { inputs: {}, attrs: { size: 1, value: reduction === 'mean' ? NaN : 0, dtype: 'float32' } });
  const per = ctx.run(src.ceRows(ctx.gen(), rows, cols, ignoreIndex), [logits, targets]);
  const out = ctx.run(src.sumScaled(ctx.gen(), rows, mult), [per]);
  ctx.free(per);
  return out;
}

export function crossEntropyGrad(ctx: GpuContext, { inputs: { logits, targets, dy }, attrs: { rows, cols, ignoreIndex, reduction } }: Args<'crossEntropyGrad'>): GpuData {
  const valid = countValid(ctx, targets, rows, cols, ignoreIndex);
  if (rows * cols === 0) return ctx.wrap(null, 0);
  const mult = reduction === 'mean' ? 1 / valid : 1;
  if (cols <= src.ONE_PASS_COLS) return ctx.run(src.ceGradRows(ctx.gen(), rows, cols, ignoreIndex, mult, true), [logits, targets, dy]);
  const st = ctx.run(src.rowStats(ctx.gen(), rows, cols), [logits]);
  const dx = ctx.run(src.ceGradRows(ctx.gen(), rows, cols, ignoreIndex, mult, false), [logits, targets, dy, st]);
  ctx.free(st);
  return dx;
}

export function layerNorm(ctx: GpuContext, { inputs: { x, w, b }, attrs: { rows, cols, eps } }: Args<'layerNorm'>) {
  // Mean and rstd come from one dispatch, as two lanes of one buffer.
  const [mean, rstd] = ctx.lanes(src.lnStats(ctx.gen(), rows, cols, eps), [x], 2);
  const st = ctx.packedPair(mean, rstd);
  const args = [x, ...(st ? [st] : [mean, rstd]), ...(w ? [w] : []), ...(b ? [b] : [])];
  const y = ctx.run(src.normApplyStats(ctx.gen(), rows, cols, true, !!st, !!w, !!b), args);
  return { y, mean, rstd };
}

export function layerNormGrad(ctx: GpuContext, { inputs: { x, w, mean, rstd, dy, addend = null }, attrs: { rows, cols, need } }: Args<'layerNormGrad'>) {
  const st = ctx.packedPair(mean, rstd);
  const stats = st ? [st] : [mean, rstd];
  return {
    dx: need.x ? normDx(ctx, x, stats, w, dy, rows, cols, true, addend) : null,
    dw: need.w ? ctx.run(src.normColSum(ctx.gen(), rows, cols, true, !!st, true), [x, ...stats, dy]) : null,
    db: need.b ? ctx.run(src.normColSum(ctx.gen(), rows, cols, true, !!st, false), [dy]) : null,
  };
}

/** dx of a norm (plus an addend) in two dispatches: packed row sums (sum g, sum g h), then dx. */
export function normDx(
  ctx: GpuContext, x: GpuData, stats: GpuData[], w: GpuData | null, dy: GpuData, rows: number, cols: number, centered: boolean, addend: GpuData | null,
): GpuData {
  const packed = centered && stats.length === 1;
  const ws = w ? [w] : [];
  const sums = ctx.run(src.normRowSums(ctx.gen(), rows, cols, centered, packed, !!w), [x, ...stats, dy, ...ws]);
  const dx = ctx.run(src.normDxSums(ctx.gen(), rows, cols, centered, packed, !!w, !!addend), [x, ...stats, dy, sums, ...ws, ...(addend ? [addend] : [])]);
  ctx.free(sums);
  return dx;
}

export function rmsNorm(ctx: GpuContext, { inputs: { x, w }, attrs: { rows, cols, eps } }: Args<'rmsNorm'>) {
  const rstd = ctx.run(src.rmsRstd(ctx.gen(), rows, cols, eps), [x]);
  const y = ctx.run(src.normApplyStats(ctx.gen(), rows, cols, false, false, !!w, false), [x, rstd, ...(w ? [w] : [])]);
  return { y, rstd };
}

export function rmsNormGrad(ctx: GpuContext, { inputs: { x, w, rstd, dy, addend = null }, attrs: { rows, cols, need } }: Args<'rmsNormGrad'>) {
  return {
    dx: need.x ? normDx(ctx, x, [rstd], w, dy, rows, cols, false, addend) : null,
    dw: need.w ? ctx.run(src.normColSum(ctx.gen(), rows, cols, false, false, true), [x, rstd, dy]) : null,
  };
}

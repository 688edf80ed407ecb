import { countValidTargets } from '../checks.ts';
import type { AdamHyper, Reduction } from '../../backend.ts';
import type { Alloc, Arr, FArr } from './arrays.ts';
import { arenaArray, arenaFree, inArena } from './arena.ts';
import { runRows, splits } from './rows.ts';

/**
 * The fused row kernels: each allocates its outputs and runs one of
 * row-kernels.ts through runRows (across the pool for large inputs).
 */

export function softmaxRows(alloc: Alloc, x: FArr, rows: number, cols: number, log: boolean): FArr {
  const y = alloc(rows * cols);
  runRows(log ? 'logSoftmax' : 'softmax', 'softmaxRows', [x, y], [cols, log ? 1 : 0], rows, rows * cols);
  return y;
}

export function softmaxGradRows(alloc: Alloc, y: FArr, dy: FArr, rows: number, cols: number, log: boolean): FArr {
  const dx = alloc(rows * cols);
  runRows(log ? 'logSoftmax' : 'softmax', 'softmaxGradRows', [y, dy, dx], [cols, log ? 1 : 0], rows, rows * cols);
  return dx;
}

/** Targets where the pool's workers can read them (a copy in the shared memory when they are not there). */
function sharedTargets(targets: Arr, rows: number): Int32Array {
  const t = targets as Int32Array;
  if (inArena(t)) return t;
  const copy = rows >= 64 ? arenaArray(Int32Array, rows) : null;
  if (!copy) return t;
  copy.set(t.subarray(0, rows));
  return copy;
}

export function crossEntropyRows(
  alloc: Alloc, logits: FArr, targets: Arr, rows: number, cols: number, ignoreIndex: number, reduction: Reduction,
): FArr {
  const valid = countValidTargets(targets, rows, cols, ignoreIndex);
  // Each row's loss in float64, summed here in row order: the total does not depend on the split.
  const loss = arenaArray(Float64Array, rows) ?? new Float64Array(rows);
  const t = sharedTargets(targets, rows);
  runRows('crossEntropy', 'crossEntropyLossRows', [logits, t, loss], [cols, ignoreIndex], rows, rows * cols);
  let total = 0;
  for (let r = 0; r < rows; r++) if (targets[r] !== ignoreIndex) total += loss[r];
  arenaFree(loss);
  if (t !== targets) arenaFree(t);
  // PyTorch: a mean over zero valid targets is NaN.
  const out = alloc(1);
  out[0] = reduction === 'mean' ? total / valid : total;
  return out;
}

export function crossEntropyGradRows(
  alloc: Alloc, logits: FArr, targets: Arr, dy: FArr, rows: number, cols: number, ignoreIndex: number, reduction: Reduction,
): FArr {
  const valid = countValidTargets(targets, rows, cols, ignoreIndex);
  const scale = reduction === 'mean' ? dy[0] / valid : dy[0];
  const dx = alloc(rows * cols);
  const t = sharedTargets(targets, rows);
  runRows('crossEntropy', 'crossEntropyGradRows', [logits, t, dx], [cols, ignoreIndex, scale], rows, rows * cols);
  if (t !== targets) arenaFree(t);
  return dx;
}

export function layerNormRows(
  alloc: Alloc, x: FArr, w: FArr | null, b: FArr | null, rows: number, cols: number, eps: number,
): { y: FArr; mean: FArr; rstd: FArr } {
  const y = alloc(rows * cols);
  const mean = alloc(rows);
  const rstd = alloc(rows);
  runRows('layerNorm', 'layerNormRows', [x, w, b, y, mean, rstd], [cols, eps], rows, rows * cols);
  return { y, mean, rstd };
}

export function layerNormGradRows(
  alloc: Alloc, x: FArr, w: FArr | null, mean: FArr, rstd: FArr, dy: FArr, rows: number, cols: number,
  need: { x: boolean; w: boolean; b: boolean },
): { dx: FArr | null; dw: FArr | null; db: FArr | null } {
  const dx = need.x ? alloc(rows * cols) : null;
  const dw = need.w ? alloc(cols) : null;
  const db = need.b ? alloc(cols) : null;
  const all = [x, w, mean, rstd, dy, dx, dw, db];
  if (!splits(all, rows, rows * cols)) {
    runRows('layerNorm', 'layerNormGradFused', all, [cols], rows, 0);
    return { dx, dw, db };
  }
  // dx alone (dw, db null) keeps no sum across rows, so the fused kernel splits by rows.
  if (dx) runRows('layerNorm', 'layerNormGradFused', [x, w, mean, rstd, dy, dx, null, null], [cols], rows, rows * cols);
  // The weight and bias gradients sum over rows: split by columns, so each sum keeps its order.
  if (dw || db) runRows('layerNorm', 'normGradWCols', [x, mean, rstd, dy, dw, db], [cols, rows], cols, rows * cols);
  return { dx, dw, db };
}

export function rmsNormRows(
  alloc: Alloc, x: FArr, w: FArr | null, rows: number, cols: number, eps: number,
): { y: FArr; rstd: FArr } {
  const y = alloc(rows * cols);
  const rstd = alloc(rows);
  runRows('rmsNorm', 'rmsNormRows', [x, w, y, rstd], [cols, eps], rows, rows * cols);
  return { y, rstd };
}

export function rmsNormGradRows(
  alloc: Alloc, x: FArr, w: FArr | null, rstd: FArr, dy: FArr, rows: number, cols: number, need: { x: boolean; w: boolean },
): { dx: FArr | null; dw: FArr | null } {
  const dx = need.x ? alloc(rows * cols) : null;
  const dw = need.w ? alloc(cols) : null;
  const all = [x, w, rstd, dy, dx, dw];
  if (!splits(all, rows, rows * cols)) {
    runRows('rmsNorm', 'rmsNormGradFused', all, [cols], rows, 0);
    return { dx, dw };
  }
  if (dx) runRows('rmsNorm', 'rmsNormGradFused', [x, w, rstd, dy, dx, null], [cols], rows, rows * cols);
  if (dw) runRows('rmsNorm', 'normGradWCols', [x, null, rstd, dy, dw, null], [cols, rows], cols, rows * cols);
  return { dx, dw };
}

/** out = silu(x) over n elements. */
export function siluInto(x: FArr, out: FArr, n: number): void {
  runRows('silu', 'siluElements', [x, out], [], n, n);
}

/** out = dy * silu'(x) over n elements. */
export function siluGradInto(x: FArr, dy: FArr, out: FArr, n: number): void {
  runRows('silu', 'siluGradElements', [x, dy, out], [], n, n);
}

/** In place: p, m, v are updated and returned. */
export function adamInPlace(p: FArr, g: FArr, m: FArr, v: FArr, size: number, h: AdamHyper): void {
  const { lr, beta1, beta2, eps, weightDecay, step, decoupled } = h;
  const bc1 = 1 - Math.pow(beta1, step);
  const bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
  const stepSize = lr / bc1;
  const decay = decoupled ? 1 - lr * weightDecay : 1;
  runRows('adamUpdate', 'adamElements', [p, g, m, v], [beta1, beta2, eps, weightDecay, decoupled ? 1 : 0, stepSize, decay, bc2Sqrt], size, 4 * size);
}

import { attach } from '../autograd.ts';
import { runKernel } from '../engine.ts';
import { broadcastShapes, fmt } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { backendOf, requireFloat, result } from './util.ts';

export interface MatmulOptions {
  /** Use the transpose of a's last two axes (read in place, not copied). */
  transposeA?: boolean;
  transposeB?: boolean;
}

/**
 * op(a) @ op(b), batched with broadcasting over all but the last two axes.
 * `matmul(x, w, { transposeB: true })` is a Linear's x @ W^T.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const ta = opts.transposeA ?? false;
  const tb = opts.transposeB ?? false;
  requireFloat('matmul', a, b);
  const be = backendOf('matmul', a, b);
  if (a.rank < 2 || b.rank < 2) {
    throw new Error(`matmul: both inputs need rank >= 2, got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  }
  const [m, ka] = ta ? [a.shape[a.rank - 1], a.shape[a.rank - 2]] : [a.shape[a.rank - 2], a.shape[a.rank - 1]];
  const [kb, n] = tb ? [b.shape[b.rank - 1], b.shape[b.rank - 2]] : [b.shape[b.rank - 2], b.shape[b.rank - 1]];
  if (ka !== kb) {
    throw new Error(`matmul: inner dimensions differ: ${fmt(a.shape)}${ta ? '^T' : ''} @ ${fmt(b.shape)}${tb ? '^T' : ''} (${ka} vs ${kb})`);
  }
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  let batch: number[];
  try {
    batch = broadcastShapes('matmul', aBatch, bBatch);
  } catch {
    throw new Error(`matmul: batch dimensions ${fmt(aBatch)} of ${fmt(a.shape)} and ${fmt(bBatch)} of ${fmt(b.shape)} cannot be broadcast together`);
  }
  const shape = [...batch, m, n];
  const y = result(be, runKernel(be, 'matmul', shape, a.data_, a.shape, b.data_, b.shape, ta, tb, shape), shape);
  // Each thunk runs only for an input that needs a gradient: a frozen weight costs no dW kernel.
  return attach('matmul', y, [a, b], (dy) => {
    if (!ta && !tb) return [() => matmul(dy, b, { transposeB: true }), () => matmul(a, dy, { transposeA: true })];
    if (ta && !tb) return [() => matmul(b, dy, { transposeB: true }), () => matmul(a, dy)];
    if (!ta && tb) return [() => matmul(dy, b), () => matmul(dy, a, { transposeA: true })];
    return [
      () => matmul(b, dy, { transposeA: true, transposeB: true }),
      () => matmul(dy, a, { transposeA: true, transposeB: true }),
    ];
  }, [a.requiresGrad && b, b.requiresGrad && a]);
}

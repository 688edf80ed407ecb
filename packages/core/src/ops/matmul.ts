import { attach, forwardScope } from '../autograd.ts';
import { runKernel } from '../engine.ts';
import { broadcastShapes, fmt } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { sum } from './reduce.ts';
import { reshape } from './shape.ts';
import { backendOf, requireFloat, requireFloatOrHalf, result } from './util.ts';

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
  requireFloat('matmul', a);
  requireFloatOrHalf('matmul', b); // a 16-bit B (a frozen weight) is widened while the gemm packs it
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
  const y = result(be, runKernel(be, 'matmul', shape, {
    inputs: { a: a.data_, b: b.data_ }, attrs: { aShape: a.shape, bShape: b.shape, transA: ta, transB: tb, outShape: shape },
  }), shape);
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

/**
 * F.linear: x @ W^T + b with W `[out, in]`, the bias added inside the matmul
 * kernel. Leading axes of x fold into rows, so dW is one gemm.
 * `linear(x, fc.weight, fc.bias)` maps [..., in] to [..., out].
 */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  requireFloat('linear', x, ...(bias ? [bias] : []));
  requireFloatOrHalf('linear', weight);
  const be = backendOf('linear', x, weight, ...(bias ? [bias] : []));
  const [out, inF] = weight.shape;
  if (weight.rank !== 2 || x.rank < 1 || x.shape[x.rank - 1] !== inF) {
    throw new Error(`linear: input ${fmt(x.shape)} does not fit weight ${fmt(weight.shape)} (expected [..., ${inF}] and [out, in])`);
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== out)) {
    throw new Error(`linear: bias ${fmt(bias.shape)} must have shape [${out}] for weight ${fmt(weight.shape)}`);
  }
  const lead = x.shape.slice(0, -1);
  return forwardScope(() => {
    const x2 = x.rank === 2 ? x : reshape(x, [-1, inF]); // [..., in] -> [N, in]
    const shape = [x2.shape[0], out];
    const data = runKernel(be, 'matmul', shape, {
      inputs: { a: x2.data_, b: weight.data_, bias: bias?.data_ ?? null },
      attrs: { aShape: x2.shape, bShape: weight.shape, transA: false, transB: true, outShape: shape },
    });
    const y = attach('linear', result(be, data, shape), bias ? [x2, weight, bias] : [x2, weight], (dy) => [
      () => matmul(dy, weight), // [N, out] @ [out, in]
      () => matmul(dy, x2, { transposeA: true }), // [out, N] @ [N, in]: only when the weight trains
      () => sum(dy, 0),
    ], [x2.requiresGrad && weight, weight.requiresGrad && x2]);
    return x.rank === 2 ? y : reshape(y, [...lead, out]); // [N, out] -> [..., out]
  });
}

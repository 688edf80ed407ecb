import { attach, forwardScope } from '../autograd.ts';
import { runKernel } from '../engine.ts';
import type { Backend } from '../backend.ts';
import { broadcastShapes, fmt, type Shape } from '../shape.ts';
import { keep, type Tensor } from '../tensor.ts';
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

/** Options of `lowRankLinear`. */
export interface LowRankLinearOptions {
  /** The weight is stored `[in, out]` (transformers' Conv1D) instead of `[out, in]`. */
  fanInFanOut?: boolean;
}

/**
 * A LoRA linear without dropout: y = x W^T + b + scale * (x A^T) B^T, with W `[out, in]`,
 * A `[r, in]` and B `[out, r]`; the low-rank term is the matmul's epilogue (2 kernels
 * forward, and backward g = scale dY B, dx = dY W + g A, dA = g^T x, dB = scale dY^T (x A^T)).
 * `lowRankLinear(x, q.weight, q.bias, loraA, loraB, 2)` maps [..., in] to [..., out].
 */
export function lowRankLinear(
  x: Tensor, weight: Tensor, bias: Tensor | null, a: Tensor, b: Tensor, scale: number, opts: LowRankLinearOptions = {},
): Tensor {
  const op = 'lowRankLinear';
  const fio = opts.fanInFanOut ?? false;
  requireFloat(op, x, a, b, ...(bias ? [bias] : []));
  requireFloatOrHalf(op, weight);
  const be = backendOf(op, x, weight, a, b, ...(bias ? [bias] : []));
  const [out, inF] = fio ? [weight.shape[1], weight.shape[0]] : weight.shape;
  const r = a.shape[0];
  if (weight.rank !== 2 || x.rank < 1 || x.shape[x.rank - 1] !== inF || a.rank !== 2 || a.shape[1] !== inF
    || b.rank !== 2 || b.shape[0] !== out || b.shape[1] !== r || (bias && (bias.rank !== 1 || bias.shape[0] !== out))) {
    throw new Error(`${op}: input ${fmt(x.shape)}, weight ${fmt(weight.shape)}${fio ? ' ([in, out])' : ''}, A ${fmt(a.shape)}, B ${fmt(b.shape)}`
      + `${bias ? `, bias ${fmt(bias.shape)}` : ''} do not fit (expected [..., in], [out, in], [r, in], [out, r], [out])`);
  }
  const lead = x.shape.slice(0, -1);
  return forwardScope(() => {
    const x2 = x.rank === 2 ? x : reshape(x, [-1, inF]); // [..., in] -> [N, in]
    const n = x2.shape[0];
    const h = product(be, x2, a, false, true, [n, r]); // [N, r]
    const y = product(be, x2, weight, false, !fio, [n, out], { bias, lowRank: { h, w: b, transW: true, scale } }); // [N, out]
    const y2 = attach(op, y, bias ? [x2, weight, a, b, bias] : [x2, weight, a, b], (dy) => {
      // g = scale * dY B [N, r] feeds dx and dA: made once, freed after its last reader.
      let g: Tensor | null = null;
      let readers = (x2.requiresGrad ? 1 : 0) + (a.requiresGrad ? 1 : 0);
      const withG = (f: (g: Tensor) => Tensor): Tensor => {
        g ??= keep(product(be, dy, b, false, false, [n, r], { alpha: scale }));
        const res = f(g);
        if (--readers === 0) g.dispose();
        return res;
      };
      return [
        () => withG((gg) => product(be, dy, weight, false, fio, [n, inF], { lowRank: { h: gg, w: a, transW: false, scale: 1 } })),
        () => (fio ? matmul(x2, dy, { transposeA: true }) : matmul(dy, x2, { transposeA: true })),
        () => withG((gg) => matmul(gg, x2, { transposeA: true })), // [r, N] @ [N, in]
        () => product(be, dy, h, true, false, [out, r], { alpha: scale }), // scale * [out, N] @ [N, r]
        () => sum(dy, 0),
      ];
    }, [(x2.requiresGrad || a.requiresGrad) && b, x2.requiresGrad && weight, (weight.requiresGrad || a.requiresGrad) && x2,
      x2.requiresGrad && a, b.requiresGrad && h]);
    return x.rank === 2 ? y2 : reshape(y2, [...lead, out]); // [N, out] -> [..., out]
  });
}

interface ProductExtras {
  bias?: Tensor | null;
  alpha?: number;
  lowRank?: { h: Tensor; w: Tensor; transW: boolean; scale: number };
}

/** One matmul kernel on 2-D operands, outside the tape (the caller attaches or is a backward). */
function product(be: Backend, a: Tensor, b: Tensor, transA: boolean, transB: boolean, shape: Shape, e: ProductExtras = {}): Tensor {
  const low = e.lowRank;
  return result(be, runKernel(be, 'matmul', shape, {
    inputs: { a: a.data_, b: b.data_, bias: e.bias?.data_ ?? null, h: low?.h.data_ ?? null, w: low?.w.data_ ?? null },
    attrs: {
      aShape: a.shape, bShape: b.shape, transA, transB, outShape: shape, alpha: e.alpha,
      lowRank: low ? { r: low.h.shape[1], transW: low.transW, scale: low.scale } : null,
    },
  }), shape);
}

import { accumulating, attach, forwardScope } from '../autograd.ts';
import { runKernel } from '../engine.ts';
import type { Backend } from '../backend.ts';
import { broadcastShapes, fmt, shapesEqual, type Shape } from '../shape.ts';
import { keep, type GradThunk, type Tensor } from '../tensor.ts';
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

export interface LinearOptions {
  /** A tensor of the output's shape added to it inside the kernel (a residual: `x + linear(h, W, b)`). */
  addend?: Tensor | null;
  /** x passes through GELU (tanh approximation) as the kernel reads it: `linear(gelu(u), W, b)` without the gelu tensor. */
  inputActivation?: 'gelu' | null;
}

/**
 * F.linear: x @ W^T + b with W `[out, in]`, the bias (and an optional addend) added inside
 * the matmul kernel. Leading axes of x fold into rows, so dW is one gemm.
 * `linear(x, fc.weight, fc.bias)` maps [..., in] to [..., out].
 */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null, opts: LinearOptions = {}): Tensor {
  const addend = opts.addend ?? null;
  const extra = [bias, addend].filter((t): t is Tensor => t !== null);
  requireFloat('linear', x, ...extra);
  requireFloatOrHalf('linear', weight);
  const be = backendOf('linear', x, weight, ...extra);
  const [out, inF] = weight.shape;
  if (weight.rank !== 2 || x.rank < 1 || x.shape[x.rank - 1] !== inF) {
    throw new Error(`linear: input ${fmt(x.shape)} does not fit weight ${fmt(weight.shape)} (expected [..., ${inF}] and [out, in])`);
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== out)) {
    throw new Error(`linear: bias ${fmt(bias.shape)} must have shape [${out}] for weight ${fmt(weight.shape)}`);
  }
  const shape = [...x.shape.slice(0, -1), out];
  if (addend && !shapesEqual(addend.shape, shape)) throw new Error(`linear: addend ${fmt(addend.shape)} must have the output's shape ${fmt(shape)}`);
  const n = x.size / inF;
  const act = opts.inputActivation ?? null;
  const y = product(be, rows(x, inF), weight, false, true, [n, out], { bias, addend, aAct: act }, shape);
  // dW runs before dx, so that its temporaries are gone before dx (an activation's size) is made.
  return attach('linear', y, [weight, x, ...extra], (dy) => {
    const dy2 = rows(dy, out); // [..., out] read as [N, out]
    // The input the matmul saw: x, or gelu(x) made again for dW (a frozen weight never needs it).
    const seen = (): Operand => (act ? rows(result(be, runKernel(be, 'unary', x.shape, {
      inputs: { x: x.data_ }, attrs: { op: act, size: x.size },
    }), x.shape), inF) : rows(x, inF));
    const grads: GradThunk[] = [
      () => product(be, dy2, seen(), true, false, [out, inF]), // [out, N] @ [N, in]: only when the weight trains
      // [N, out] @ [out, in], times gelu'(x) through the activation, plus the gradient summed so far
      accumulating((acc) => product(be, dy2, weight, false, false, [n, inF], { addend: acc, gradOf: act, at: act ? x : null }, x.shape)),
    ];
    if (bias) grads.push(() => sum(reshape(dy, [n, out]), 0));
    if (addend) grads.push(() => dy);
    return grads;
  }, [x.requiresGrad && weight, (weight.requiresGrad || (act !== null && x.requiresGrad)) && x]);
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
  const n = x.size / inF;
  const x2 = rows(x, inF); // [..., in] read as [N, in]
  return forwardScope(() => {
    const h = product(be, x2, a, false, true, [n, r]); // [N, r]
    const lowRank = { h, w: b, transW: true, scale };
    const y = product(be, x2, weight, false, !fio, [n, out], { bias, lowRank }, [...x.shape.slice(0, -1), out]); // [..., out]
    return attach(op, y, bias ? [x, weight, a, b, bias] : [x, weight, a, b], (dy) => {
      const dy2 = rows(dy, out); // [N, out]
      // g = scale * dY B [N, r] feeds dx and dA: made once, freed after its last reader.
      let g: Tensor | null = null;
      let readers = (x.requiresGrad ? 1 : 0) + (a.requiresGrad ? 1 : 0);
      const withG = (f: (g: Tensor) => Tensor): Tensor => {
        g ??= keep(product(be, dy2, b, false, false, [n, r], { alpha: scale }));
        const res = f(g);
        if (--readers === 0) g.dispose();
        return res;
      };
      return [
        accumulating((acc) => withG((gg) => product(be, dy2, weight, false, fio, [n, inF], {
          lowRank: { h: gg, w: a, transW: false, scale: 1 }, addend: acc,
        }, x.shape))),
        () => (fio ? product(be, x2, dy2, true, false, [inF, out]) : product(be, dy2, x2, true, false, [out, inF])),
        () => withG((gg) => product(be, gg, x2, true, false, [r, inF])), // [r, N] @ [N, in]
        () => product(be, dy2, h, true, false, [out, r], { alpha: scale }), // scale * [out, N] @ [N, r]
        () => sum(reshape(dy, [n, out]), 0),
      ];
    }, [(x.requiresGrad || a.requiresGrad) && b, x.requiresGrad && weight, (weight.requiresGrad || a.requiresGrad) && x,
      x.requiresGrad && a, b.requiresGrad && h]);
  });
}

/** A matmul operand: a tensor's storage under a 2-D shape. */
type Operand = Pick<Tensor, 'data_' | 'shape'>;

/** t's storage read as [size / cols, cols] (leading axes folded into rows). */
function rows(t: Tensor, cols: number): Operand {
  return { data_: t.data_, shape: [t.size / Math.max(cols, 1), cols] };
}

interface ProductExtras {
  bias?: Tensor | null;
  alpha?: number;
  lowRank?: { h: Tensor; w: Tensor; transW: boolean; scale: number };
  addend?: Tensor | null;
  aAct?: 'gelu' | null;
  gradOf?: 'gelu' | null;
  at?: Tensor | null;
}

/** One matmul kernel on 2-D operands, outside the tape, as a tensor of `shape` (the kernel's, or a reshape of it). */
function product(
  be: Backend, a: Operand, b: Operand, transA: boolean, transB: boolean, kernelShape: Shape, e: ProductExtras = {}, shape = kernelShape,
): Tensor {
  const low = e.lowRank;
  return result(be, runKernel(be, 'matmul', shape, {
    inputs: {
      a: a.data_, b: b.data_, bias: e.bias?.data_ ?? null, h: low?.h.data_ ?? null, w: low?.w.data_ ?? null,
      addend: e.addend?.data_ ?? null, at: e.at?.data_ ?? null,
    },
    attrs: {
      aShape: a.shape, bShape: b.shape, transA, transB, outShape: kernelShape, alpha: e.alpha,
      lowRank: low ? { r: low.h.shape[1], transW: low.transW, scale: low.scale } : null, aAct: e.aAct ?? null, gradOf: e.gradOf ?? null,
    },
  }), shape);
}

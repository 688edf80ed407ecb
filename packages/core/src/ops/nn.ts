import type { Backend, Reduction } from '../backend.ts';
import { accumulating, attach, forwardScope, releaseAfterBackward } from '../autograd.ts';
import { countUpload, runKernel } from '../engine.ts';
import { globalRng } from '../rng.ts';
import { fmt, normalizeAxis, sizeOf, shapesEqual, type Shape } from '../shape.ts';
import { makeTensor, type Tensor } from '../tensor.ts';
import { mul } from './binary.ts';
import { transpose } from './shape.ts';
import { backendOf, requireDtype, requireFloat, result } from './util.ts';

function softmaxLike(x: Tensor, axis: number, log: boolean): Tensor {
  const name = log ? 'logSoftmax' : 'softmax';
  requireFloat(name, x);
  const a = normalizeAxis(name, axis, x.rank);
  if (a !== x.rank - 1) {
    // NOTE: the kernels work on the last axis; move the axis there and back.
    return forwardScope(() => transpose(softmaxLike(transpose(x, a, -1), -1, log), a, -1));
  }
  const b = x.backend;
  const cols = x.shape[x.rank - 1] ?? 1;
  const rows = x.size / Math.max(cols, 1);
  const y = result(b, runKernel(b, 'softmax', x.shape, { inputs: { x: x.data_ }, attrs: { rows, cols, log } }), x.shape);
  return attach(name, y, [x], (dy) => [
    () => result(b, runKernel(b, 'softmaxGrad', x.shape, { inputs: { y: y.data_, dy: dy.data_ }, attrs: { rows, cols, log } }), x.shape),
  ], [y]);
}

/** Stable softmax (max-subtracted): `softmax(scores, -1)` */
export function softmax(x: Tensor, axis = -1): Tensor {
  return softmaxLike(x, axis, false);
}

/** Stable x - logsumexp(x): `logSoftmax(logits, -1)` */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return softmaxLike(x, axis, true);
}

export interface CrossEntropyOptions {
  /** Targets equal to this contribute nothing and are not counted (default -100). */
  ignoreIndex?: number;
  reduction?: Reduction;
}

/**
 * Fused logSoftmax + NLL, classes on the last axis: `crossEntropy(logits, targets)`
 * with logits [..., C] and int32 targets [...]. Returns a 0-d tensor.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? 'mean';
  requireFloat('crossEntropy', logits);
  requireDtype('crossEntropy', targets, 'targets', 'int32');
  const b = backendOf('crossEntropy', logits, targets);
  if (logits.rank < 1 || !shapesEqual(targets.shape, logits.shape.slice(0, -1))) {
    throw new Error(`crossEntropy: targets ${fmt(targets.shape)} must have the shape of logits ${fmt(logits.shape)} without its last (class) axis`);
  }
  if (reduction !== 'mean' && reduction !== 'sum') throw new Error(`crossEntropy: reduction must be 'mean' or 'sum', got '${reduction}'`);
  const cols = logits.shape[logits.rank - 1];
  const rows = targets.size;
  const y = result(b, runKernel(b, 'crossEntropy', [], {
    inputs: { logits: logits.data_, targets: targets.data_ }, attrs: { rows, cols, ignoreIndex, reduction },
  }), []);
  return attach('crossEntropy', y, [logits], (dy) => [
    () => {
      const data = runKernel(b, 'crossEntropyGrad', logits.shape, {
        inputs: { logits: logits.data_, targets: targets.data_, dy: dy.data_ }, attrs: { rows, cols, ignoreIndex, reduction },
      });
      return result(b, data, logits.shape);
    },
  ], [logits, targets]);
}

function checkNormParam(op: string, p: Tensor | null, cols: number, what: string): void {
  if (p && (p.rank !== 1 || p.shape[0] !== cols)) {
    throw new Error(`${op}: ${what} must have shape [${cols}] (the last axis of the input), got ${fmt(p.shape)}`);
  }
}

/**
 * Layer normalisation over the last axis (biased variance):
 * `layerNorm(x, weight, bias, 1e-5)`
 */
export function layerNorm(x: Tensor, weight: Tensor | null = null, bias: Tensor | null = null, eps = 1e-5): Tensor {
  requireFloat('layerNorm', x);
  const params = [weight, bias].filter((p): p is Tensor => p !== null);
  const b = backendOf('layerNorm', x, ...params);
  const cols = x.shape[x.rank - 1];
  checkNormParam('layerNorm', weight, cols, 'weight');
  checkNormParam('layerNorm', bias, cols, 'bias');
  const rows = x.size / cols;
  const out = runKernel(b, 'layerNorm', x.shape, {
    inputs: { x: x.data_, w: weight?.data_ ?? null, b: bias?.data_ ?? null }, attrs: { rows, cols, eps },
  });
  const y = result(b, out.y, x.shape);
  const mean = result(b, out.mean, [rows]);
  const rstd = result(b, out.rstd, [rows]);
  const inputs = [x, weight ?? x, bias ?? x];
  const attached = attach('layerNorm', y, inputs, (dy) => {
    const need = { x: x.requiresGrad, w: !!weight?.requiresGrad, b: !!bias?.requiresGrad };
    let grads: ReturnType<typeof runKernel<'layerNormGrad'>> | null = null;
    // x's thunk runs first: the gradient summed so far for x is added to dx in the kernel.
    const get = (acc: Tensor | null = null): NonNullable<typeof grads> => {
      grads ??= runKernel(b, 'layerNormGrad', undefined, {
        inputs: { x: x.data_, w: weight?.data_ ?? null, mean: mean.data_, rstd: rstd.data_, dy: dy.data_, addend: acc?.data_ ?? null },
        attrs: { rows, cols, need },
      });
      return grads;
    };
    return [
      need.x ? accumulating((acc) => result(b, get(acc).dx, x.shape)) : null,
      weight && need.w ? () => result(b, get().dw, [cols]) : null,
      bias && need.b ? () => result(b, get().db, [cols]) : null,
    ];
  }, [x, weight]);
  releaseAfterBackward(attached, mean, rstd);
  return attached;
}

/** RMS normalisation over the last axis (HF LlamaRMSNorm): `rmsNorm(x, weight, 1e-6)` */
export function rmsNorm(x: Tensor, weight: Tensor | null = null, eps = 1e-6): Tensor {
  requireFloat('rmsNorm', x);
  const b = backendOf('rmsNorm', x, ...(weight ? [weight] : []));
  const cols = x.shape[x.rank - 1];
  checkNormParam('rmsNorm', weight, cols, 'weight');
  const rows = x.size / cols;
  const out = runKernel(b, 'rmsNorm', x.shape, { inputs: { x: x.data_, w: weight?.data_ ?? null }, attrs: { rows, cols, eps } });
  const y = result(b, out.y, x.shape);
  const rstd = result(b, out.rstd, [rows]);
  const attached = attach('rmsNorm', y, [x, weight ?? x], (dy) => {
    const need = { x: x.requiresGrad, w: !!weight?.requiresGrad };
    let grads: ReturnType<typeof runKernel<'rmsNormGrad'>> | null = null;
    const get = (acc: Tensor | null = null): NonNullable<typeof grads> => {
      grads ??= runKernel(b, 'rmsNormGrad', undefined, {
        inputs: { x: x.data_, w: weight?.data_ ?? null, rstd: rstd.data_, dy: dy.data_, addend: acc?.data_ ?? null }, attrs: { rows, cols, need },
      });
      return grads;
    };
    return [need.x ? accumulating((acc) => result(b, get(acc).dx, x.shape)) : null, weight && need.w ? () => result(b, get().dw, [cols]) : null];
  }, [x, weight]);
  releaseAfterBackward(attached, rstd);
  return attached;
}

export interface AttentionOptions {
  causal?: boolean;
  /** Defaults to 1/sqrt(headDim). */
  scale?: number;
  /**
   * 'bhtd' (default): q, k, v are [..., T, D]. 'bthd': they are [B, T, H, D], a projection's
   * output viewed per head, and so is the result: the head split and merge need no permute.
   */
  layout?: 'bhtd' | 'bthd';
}

/**
 * Fused softmax(q k^T * scale + causal mask) v over [..., T, D] inputs:
 * `scaledDotProductAttention(q, k, v, { causal: true })`. With a KV cache
 * (more keys than queries), query i sits at position i + (Tk - Tq).
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  requireFloat('scaledDotProductAttention', q, k, v);
  const b = backendOf('scaledDotProductAttention', q, k, v);
  if (q.rank < 2 || k.rank !== q.rank || v.rank !== q.rank) {
    throw new Error(`scaledDotProductAttention: q, k, v must share a rank >= 2, got ${fmt(q.shape)}, ${fmt(k.shape)}, ${fmt(v.shape)}`);
  }
  const bthd = opts.layout === 'bthd';
  if (bthd && q.rank !== 4) throw new Error(`scaledDotProductAttention: layout 'bthd' needs [B, T, H, D] inputs, got q ${fmt(q.shape)}`);
  // bthd: [B, T, H, D] read as (lead [B, H], T, D); the head axis moves, never the data.
  const view = (s: Shape): number[] => (bthd ? [s[0], s[2], s[1], s[3]] : [...s]);
  const [qs, ks, vs] = [view(q.shape), view(k.shape), view(v.shape)];
  const lead = qs.slice(0, -2);
  const [tq, dk] = qs.slice(-2);
  const [tk, dk2] = ks.slice(-2);
  const [tv, dv] = vs.slice(-2);
  if (!shapesEqual(ks.slice(0, -2), lead) || !shapesEqual(vs.slice(0, -2), lead) || dk !== dk2 || tk !== tv) {
    throw new Error(`scaledDotProductAttention: incompatible q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)}${bthd ? ' (bthd)' : ''}`);
  }
  const causal = opts.causal ?? false;
  if (causal && tk < tq) throw new Error(`scaledDotProductAttention: causal attention needs at least as many keys (${tk}) as queries (${tq})`);
  const scale = opts.scale ?? 1 / Math.sqrt(dk);
  const bh = sizeOf(lead);
  const shape = bthd ? [q.shape[0], tq, q.shape[2], dv] : [...lead, tq, dv];
  const heads = bthd ? q.shape[2] : undefined;
  const out = runKernel(b, 'attention', shape, {
    inputs: { q: q.data_, k: k.data_, v: v.data_ }, attrs: { bh, tq, tk, dk, dv, scale, causal, heads },
  });
  const y = result(b, out.out, shape);
  const lse = result(b, out.lse, [bh, tq]);
  const attached = attach('scaledDotProductAttention', y, [q, k, v], (dy) => {
    const need = { q: q.requiresGrad, k: k.requiresGrad, v: v.requiresGrad };
    let grads: ReturnType<typeof runKernel<'attentionGrad'>> | null = null;
    const get = (): NonNullable<typeof grads> => {
      grads ??= runKernel(b, 'attentionGrad', undefined, {
        inputs: { q: q.data_, k: k.data_, v: v.data_, out: y.data_, lse: lse.data_, dout: dy.data_ },
        attrs: { bh, tq, tk, dk, dv, scale, causal, heads, need },
      });
      return grads;
    };
    return [
      need.q ? () => result(b, get().dq, q.shape) : null,
      need.k ? () => result(b, get().dk, k.shape) : null,
      need.v ? () => result(b, get().dv, v.shape) : null,
    ];
  }, [q, k, v, y]);
  releaseAfterBackward(attached, lse);
  return attached;
}

/**
 * Inverted dropout with the engine's seeded RNG: kept values scale by 1/(1-p).
 * Identity when p = 0 or not training. `dropout(x, 0.1, model.training)`
 */
export function dropout(x: Tensor, p: number, training = true): Tensor {
  if (!(p >= 0 && p < 1)) throw new Error(`dropout: p must be in [0, 1), got ${p}`);
  if (p === 0 || !training) return x;
  const b = x.backend;
  const keepScale = 1 / (1 - p);
  // The mask is freed once mul's backward, which saved it, has run.
  return forwardScope(() => mul(x, dropoutMask(b, x.shape, p, keepScale)));
}

function dropoutMask(b: Backend, shape: Shape, p: number, keepScale: number): Tensor {
  if (!b.hasStorage) return makeTensor(b, null, shape, 'float32');
  const values = new Float32Array(sizeOf(shape));
  for (let i = 0; i < values.length; i++) values[i] = globalRng.random() >= p ? keepScale : 0;
  countUpload(b);
  return makeTensor(b, b.upload(values, 'float32'), shape, 'float32');
}

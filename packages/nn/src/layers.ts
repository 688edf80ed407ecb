import {
  Tensor, add, concat, dropout, embedding, gelu, keep, layerNorm, matmul, mul, narrow, neg, permute, reshape,
  linear, rmsNorm, scaledDotProductAttention, silu, tensor, zeros, ones, getBackend,
} from '@lowrank/core';
import { Module } from './module.ts';
import { kaimingUniform_, normal_, uniform_ } from './init.ts';

/** Where a layer allocates its parameters (default: the default backend). */
export interface LayerOptions {
  backend?: string;
}

/**
 * y = x @ W^T + b, with W `[out, in]` (PyTorch's nn.Linear and its default init).
 * @example const fc = new Linear(16, 64); const y = fc.forward(x); // x [..., 16] -> y [..., 64]
 */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  weight: Tensor;
  bias: Tensor | null;

  constructor(inFeatures: number, outFeatures: number, opts: LayerOptions & { bias?: boolean } = {}) {
    super();
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const backend = opts.backend;
    this.weight = this.registerParameter('weight', zeros([outFeatures, inFeatures], { backend }));
    kaimingUniform_(this.weight);
    this.bias = null;
    if (opts.bias ?? true) {
      this.bias = this.registerParameter('bias', zeros([outFeatures], { backend }));
      const bound = 1 / Math.sqrt(Math.max(inFeatures, 1));
      uniform_(this.bias, -bound, bound);
    }
  }

  /** With `addend` (of the output's shape, a residual), returns addend + x W^T + b from the same kernel. */
  forward(x: Tensor, addend?: Tensor): Tensor {
    return linear(x, this.weight, this.bias, { addend }); // [..., in] -> [..., out], bias added in the matmul kernel
  }
}

/**
 * transformers' Conv1D (GPT-2's projections): y = x @ W + b with W stored
 * `[in, out]` (the transpose of a Linear's), read in place by the matmul, no
 * transposed copy. Init N(0, 0.02), zero bias, as GPT-2.
 * @example const cAttn = new Conv1D(768, 3 * 768); const qkv = cAttn.forward(x); // [..., 768] -> [..., 2304]
 */
export class Conv1D extends Module {
  weight: Tensor;
  bias: Tensor | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: LayerOptions & { bias?: boolean } = {}) {
    super();
    this.weight = this.registerParameter('weight', zeros([inFeatures, outFeatures], { backend: opts.backend }));
    normal_(this.weight, 0, 0.02);
    this.bias = (opts.bias ?? true) ? this.registerParameter('bias', zeros([outFeatures], { backend: opts.backend })) : null;
  }

  forward(x: Tensor): Tensor {
    const inF = this.inFeatures;
    if (x.shape[x.rank - 1] !== inF) throw new Error(`Conv1D: input ${x.describe()} does not fit weight [${inF}, ${this.outFeatures}] (expected [..., ${inF}])`);
    const x2 = x.rank === 2 ? x : reshape(x, [-1, inF]); // [..., in] -> [N, in]
    const y = matmul(x2, this.weight); // [N, in] @ [in, out]
    const yb = this.bias ? add(y, this.bias) : y;
    if (x.rank === 2) return yb;
    return reshape(yb, [...x.shape.slice(0, -1), this.outFeatures]); // [..., out]
  }
}

/**
 * A lookup table `[numEmbeddings, dim]`, init N(0, 1) like PyTorch.
 * @example const wte = new Embedding(65, 128); const h = wte.forward(ids); // [B, T] -> [B, T, 128]
 */
export class Embedding extends Module {
  weight: Tensor;

  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, opts: LayerOptions = {}) {
    super();
    this.weight = this.registerParameter('weight', zeros([numEmbeddings, embeddingDim], { backend: opts.backend }));
    normal_(this.weight, 0, 1);
  }

  forward(ids: Tensor): Tensor {
    return embedding(this.weight, ids);
  }
}

/**
 * Layer normalisation over the last axis with weight and (optional) bias.
 * @example const ln = new LayerNorm(128); const y = ln.forward(x);
 */
export class LayerNorm extends Module {
  weight: Tensor;
  bias: Tensor | null = null;

  constructor(readonly dim: number, readonly eps = 1e-5, opts: LayerOptions & { bias?: boolean } = {}) {
    super();
    this.weight = this.registerParameter('weight', ones([dim], { backend: opts.backend }));
    if (opts.bias ?? true) this.bias = this.registerParameter('bias', zeros([dim], { backend: opts.backend }));
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}

/**
 * RMS normalisation (HF LlamaRMSNorm): x / sqrt(mean(x^2) + eps) * weight.
 * @example const norm = new RMSNorm(128, 1e-6); const y = norm.forward(x);
 */
export class RMSNorm extends Module {
  weight: Tensor;

  constructor(readonly dim: number, readonly eps = 1e-6, opts: LayerOptions = {}) {
    super();
    this.weight = this.registerParameter('weight', ones([dim], { backend: opts.backend }));
  }

  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, this.eps);
  }
}

/**
 * Inverted dropout, active only in training mode.
 * @example const drop = new Dropout(0.1); const y = drop.forward(x);
 */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (!(p >= 0 && p < 1)) throw new Error(`Dropout: p must be in [0, 1), got ${p}`);
  }

  forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training);
  }
}

/** GELU, tanh approximation. @example new GELU().forward(x) */
export class GELU extends Module {
  forward(x: Tensor): Tensor {
    return gelu(x);
  }
}

/** x * sigmoid(x). @example new SiLU().forward(x) */
export class SiLU extends Module {
  forward(x: Tensor): Tensor {
    return silu(x);
  }
}

/**
 * residual + dropout(proj(x)), or dropout(proj(x)) without a residual. A plain Linear with
 * its dropout off takes the residual as its matmul's addend: one kernel instead of two.
 */
function project(proj: Module & { forward(t: Tensor): Tensor }, x: Tensor, drop: Dropout, residual?: Tensor): Tensor {
  if (!residual) return drop.forward(proj.forward(x));
  if (proj instanceof Linear && !(drop.training && drop.p > 0)) return proj.forward(x, residual);
  return add(residual, drop.forward(proj.forward(x)));
}

/** Options shared by the MLP blocks. */
export interface MLPOptions extends LayerOptions {
  bias?: boolean;
  dropout?: number;
}

/**
 * GPT-2 MLP: down_proj(gelu_tanh(up_proj(x))), then dropout.
 * @example const mlp = new MLP(128, 512); const y = mlp.forward(x); // [B, T, 128] -> [B, T, 128]
 */
export class MLP extends Module {
  upProj: Linear;
  act: GELU;
  downProj: Linear;
  dropout: Dropout;

  constructor(dim: number, hidden: number, opts: MLPOptions = {}) {
    super();
    const lin = { bias: opts.bias ?? true, backend: opts.backend };
    this.upProj = this.register('up_proj', new Linear(dim, hidden, lin));
    this.act = this.register('act', new GELU());
    this.downProj = this.register('down_proj', new Linear(hidden, dim, lin));
    this.dropout = this.register('dropout', new Dropout(opts.dropout ?? 0));
  }

  /** With `residual`, returns residual + mlp(x) (the add fused into down_proj where it can be). */
  forward(x: Tensor, residual?: Tensor): Tensor {
    const u = this.upProj.forward(x); // [B, T, hidden]
    const down = this.downProj;
    if (!(down instanceof Linear && this.act instanceof GELU)) return project(down, this.act.forward(u), this.dropout, residual);
    // A plain down_proj reads u through GELU (no [B, T, hidden] activation tensor) and adds the residual when dropout is off.
    const fuse = residual && !(this.dropout.training && this.dropout.p > 0);
    const d = linear(u, down.weight, down.bias, { inputActivation: 'gelu', addend: fuse ? residual : null }); // [B, T, dim]
    if (fuse) return d;
    const dd = this.dropout.forward(d);
    return residual ? add(residual, dd) : dd;
  }
}

/**
 * LLaMA SwiGLU MLP: down_proj(silu(gate_proj(x)) * up_proj(x)), then dropout.
 * @example const mlp = new SwiGLUMLP(128, 344); const y = mlp.forward(x);
 */
export class SwiGLUMLP extends Module {
  gateProj: Linear;
  upProj: Linear;
  downProj: Linear;
  act: SiLU;
  dropout: Dropout;

  constructor(dim: number, hidden: number, opts: MLPOptions = {}) {
    super();
    const lin = { bias: opts.bias ?? false, backend: opts.backend };
    this.gateProj = this.register('gate_proj', new Linear(dim, hidden, lin));
    this.upProj = this.register('up_proj', new Linear(dim, hidden, lin));
    this.downProj = this.register('down_proj', new Linear(hidden, dim, lin));
    this.act = this.register('act', new SiLU());
    this.dropout = this.register('dropout', new Dropout(opts.dropout ?? 0));
  }

  /** With `residual`, returns residual + mlp(x). */
  forward(x: Tensor, residual?: Tensor): Tensor {
    const g = this.gateProj.forward(x); // [B, T, hidden]
    const s = this.act.forward(g);
    const u = this.upProj.forward(x);
    const h = mul(s, u); // [B, T, hidden]
    return project(this.downProj, h, this.dropout, residual); // [B, T, dim]
  }
}

/**
 * Keys and values of every layer seen so far, for incremental decoding.
 * Its tensors outlive `tidy`; call `dispose()` when done.
 * @example const cache = new KVCache(model.config.nLayer); model.forward(ids, { kvCache: cache });
 */
export class KVCache {
  /** Tokens already cached (the position of the next token). */
  length = 0;
  readonly keys: (Tensor | null)[];
  readonly values: (Tensor | null)[];

  constructor(readonly nLayer: number) {
    this.keys = new Array<Tensor | null>(nLayer).fill(null);
    this.values = new Array<Tensor | null>(nLayer).fill(null);
  }

  /** Appends this step's k, v `[B, H, T, D]` for one layer; returns the full k, v `[B, H, length + T, D]`. */
  update(layer: number, k: Tensor, v: Tensor): { k: Tensor; v: Tensor } {
    const oldK = this.keys[layer];
    const oldV = this.values[layer];
    const fullK = keep(oldK ? concat([oldK, k], 2) : k);
    const fullV = keep(oldV ? concat([oldV, v], 2) : v);
    if (oldK) oldK.dispose();
    if (oldV) oldV.dispose();
    this.keys[layer] = fullK;
    this.values[layer] = fullV;
    return { k: fullK, v: fullV };
  }

  /** Frees every cached tensor and empties the cache. @example cache.dispose() */
  dispose(): void {
    for (const list of [this.keys, this.values]) {
      list.forEach((t, i) => {
        t?.dispose();
        list[i] = null;
      });
    }
    this.length = 0;
  }
}

const ropeTables = new Map<string, { cos: Tensor; sin: Tensor }>();

/**
 * HF rotate-half RoPE tables `[length, headDim]`: inv_freq[j] = theta^(-2j/headDim),
 * angle = t * inv_freq[j], cos/sin of cat(angle, angle). Memoised per backend.
 * @example const { cos, sin } = ropeCosSin(8, 16, 10000);
 */
export function ropeCosSin(headDim: number, length: number, theta = 10000, backendName?: string): { cos: Tensor; sin: Tensor } {
  const backend = getBackend(backendName).name;
  const key = `${backend}:${headDim}:${length}:${theta}`;
  const hit = ropeTables.get(key);
  if (hit && !hit.cos.isDisposed && !hit.sin.isDisposed) return hit;
  const half = headDim / 2;
  const cos = new Float32Array(length * headDim);
  const sin = new Float32Array(length * headDim);
  if (getBackend(backend).hasStorage) {
    for (let t = 0; t < length; t++) {
      for (let j = 0; j < half; j++) {
        const angle = t * Math.pow(theta, (-2 * j) / headDim);
        const c = Math.cos(angle);
        const s = Math.sin(angle);
        cos[t * headDim + j] = c;
        cos[t * headDim + j + half] = c;
        sin[t * headDim + j] = s;
        sin[t * headDim + j + half] = s;
      }
    }
  }
  const tables = {
    cos: keep(tensor(cos, { shape: [length, headDim], backend })),
    sin: keep(tensor(sin, { shape: [length, headDim], backend })),
  };
  ropeTables.set(key, tables);
  return tables;
}

/**
 * rope(x) = x*cos + rotate_half(x)*sin for x `[B, H, T, D]` and cos/sin `[T, D]` (or x `[B, T, H, D]` and `[T, 1, D]`).
 * @example const qr = applyRope(q, cos, sin);
 */
export function applyRope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const d = x.shape[x.rank - 1];
  const half = d / 2;
  const x1 = narrow(x, -1, 0, half); // [B, H, T, D/2]
  const x2 = narrow(x, -1, half, half); // [B, H, T, D/2]
  const rotated = concat([neg(x2), x1], -1); // [B, H, T, D]
  return add(mul(x, cos), mul(rotated, sin));
}

/** What the attention layer needs to know. */
export interface AttentionOptions extends LayerOptions {
  nEmbd: number;
  nHead: number;
  headDim?: number;
  bias?: boolean;
  dropout?: number;
  /** 'rope' rotates q and k; 'learned' leaves positions to the model's embedding. */
  positionEmbedding?: 'learned' | 'rope';
  ropeTheta?: number;
  /** Longest sequence (sizes the RoPE tables). */
  blockSize: number;
}

/** Per-call options of the attention layer. */
export interface AttentionForwardOptions {
  kvCache?: KVCache;
  /** Index of this layer in the cache. */
  layerIndex?: number;
  /** Returns residual + attention(x) (the add fused into o_proj where it can be). */
  residual?: Tensor;
}

/**
 * Causal multi-head self-attention with q/k/v/o projections (HF names),
 * optional RoPE, and a KV cache for generation.
 * @example const attn = new CausalSelfAttention({ nEmbd: 16, nHead: 2, blockSize: 8 }); const y = attn.forward(x);
 */
export class CausalSelfAttention extends Module {
  readonly nHead: number;
  readonly headDim: number;
  readonly rope: boolean;
  readonly ropeTheta: number;
  readonly blockSize: number;
  qProj: Linear;
  kProj: Linear;
  vProj: Linear;
  oProj: Linear;
  residDropout: Dropout;

  constructor(opts: AttentionOptions) {
    super();
    this.nHead = opts.nHead;
    this.headDim = opts.headDim ?? opts.nEmbd / opts.nHead;
    if (!Number.isInteger(this.headDim)) throw new Error(`CausalSelfAttention: nEmbd ${opts.nEmbd} is not divisible by nHead ${opts.nHead}`);
    this.rope = (opts.positionEmbedding ?? 'learned') === 'rope';
    if (this.rope && this.headDim % 2 !== 0) throw new Error(`CausalSelfAttention: RoPE needs an even headDim, got ${this.headDim}`);
    this.ropeTheta = opts.ropeTheta ?? 10000;
    this.blockSize = opts.blockSize;
    const inner = this.nHead * this.headDim;
    const lin = { bias: opts.bias ?? true, backend: opts.backend };
    this.qProj = this.register('q_proj', new Linear(opts.nEmbd, inner, lin));
    this.kProj = this.register('k_proj', new Linear(opts.nEmbd, inner, lin));
    this.vProj = this.register('v_proj', new Linear(opts.nEmbd, inner, lin));
    this.oProj = this.register('o_proj', new Linear(inner, opts.nEmbd, lin));
    this.residDropout = this.register('resid_dropout', new Dropout(opts.dropout ?? 0));
  }

  forward(x: Tensor, opts: AttentionForwardOptions = {}): Tensor {
    const [B, T] = x.shape; // x [B, T, C]
    const H = this.nHead;
    const D = this.headDim;
    const past = opts.kvCache?.length ?? 0;
    // Without a cache, attention reads the projections per head in place ([B, T, H, D], no permute);
    // the cache holds [B, H, T, D].
    const cached = opts.kvCache !== undefined;
    const heads = (proj: Module & { forward(t: Tensor): Tensor }): Tensor => {
      const p = proj.forward(x); // [B, T, H*D]
      const r = reshape(p, [B, T, H, D]);
      return cached ? permute(r, [0, 2, 1, 3]) : r; // [B, H, T, D] or [B, T, H, D]
    };
    let q = heads(this.qProj);
    let k = heads(this.kProj);
    let v = heads(this.vProj);
    if (this.rope) {
      const { cos, sin } = ropeCosSin(D, this.blockSize, this.ropeTheta, x.backend.name);
      const at = (t: Tensor): Tensor => (cached ? narrow(t, 0, past, T) : reshape(narrow(t, 0, past, T), [T, 1, D])); // [T, D] or [T, 1, D]
      const [c, s] = [at(cos), at(sin)]; // positions past..past+T-1
      [q, k] = [applyRope(q, c, s), applyRope(k, c, s)];
    }
    // The cache keep()s the k and v it holds, so the forward scope leaves them alone.
    if (opts.kvCache) ({ k, v } = opts.kvCache.update(opts.layerIndex ?? 0, k, v)); // [B, H, past + T, D]
    const y = scaledDotProductAttention(q, k, v, { causal: true, layout: cached ? 'bhtd' : 'bthd' });
    const t = cached ? permute(y, [0, 2, 1, 3]) : y; // [B, T, H, D]
    const merged = reshape(t, [B, T, H * D]); // [B, T, H*D]
    return project(this.oProj, merged, this.residDropout, opts.residual); // [B, T, C]
  }
}

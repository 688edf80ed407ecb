/**
 * LLaMA (transformers' LlamaForCausalLM; MistralForCausalLM and
 * Qwen2ForCausalLM are the same network with other defaults and biases),
 * with its module names and state-dict keys: `model.embed_tokens`,
 * `model.layers.{i}.self_attn.{q,k,v,o}_proj`, `model.layers.{i}.mlp.{gate,up,down}_proj`,
 * `model.layers.{i}.{input,post_attention}_layernorm`, `model.norm`, `lm_head`.
 * Grouped-query attention: query head j reads key/value head
 * j / (numAttentionHeads / numKeyValueHeads); the KV cache keeps the
 * key/value heads only. RoPE is rotate-half with `rope_theta`.
 */
import {
  Tensor, add, expand, forwardScope, narrow, permute, reshape, scaledDotProductAttention,
} from '@lowrank/core';
import { Module, ModuleList } from '../module.ts';
import { Embedding, KVCache, Linear, RMSNorm, SwiGLUMLP, applyRope, ropeCosSin } from '../layers.ts';
import { constant_, normal_ } from '../init.ts';
import type { LlamaConfig } from './config.ts';
import { PreTrainedModel, causalLmLoss, type CausalLMForwardOptions, type CausalLMOutput, type PretrainedModelOptions } from './model.ts';

/**
 * k or v `[B, Hkv, T, D]` -> `[B, Hkv * rep, T, D]`, each kv head repeated
 * rep times in a row (transformers' repeat_kv). Identity when rep is 1.
 * @example const kFull = repeatKv(k, 2);
 */
export function repeatKv(x: Tensor, rep: number): Tensor {
  if (rep === 1) return x;
  const [B, Hkv, T, D] = x.shape;
  return forwardScope(() => {
    const u = reshape(x, [B, Hkv, 1, T, D]);
    const e = expand(u, [B, Hkv, rep, T, D]);
    return reshape(e, [B, Hkv * rep, T, D]);
  });
}

/** RoPE tables cover at least `n` positions: powers of two, so generation reuses a few tables. */
function ropeLength(n: number, max: number): number {
  let len = 64;
  while (len < n) len *= 2;
  return Math.min(len, Math.max(max, n));
}

/** q/k/v/o projections with grouped-query attention and RoPE. */
export class LlamaAttention extends Module {
  readonly nHead: number;
  readonly nKvHead: number;
  readonly headDim: number;
  readonly ropeTheta: number;
  qProj: Linear;
  kProj: Linear;
  vProj: Linear;
  oProj: Linear;

  constructor(readonly config: LlamaConfig, readonly layerIdx: number, opts: PretrainedModelOptions = {}) {
    super();
    const c = config;
    this.nHead = c.numAttentionHeads;
    this.nKvHead = c.numKeyValueHeads;
    this.headDim = c.headDim;
    this.ropeTheta = c.ropeTheta;
    const C = c.hiddenSize;
    const q = this.nHead * this.headDim;
    const kv = this.nKvHead * this.headDim;
    const backend = opts.backend;
    this.qProj = this.register('q_proj', new Linear(C, q, { bias: c.qkvBias, backend }));
    this.kProj = this.register('k_proj', new Linear(C, kv, { bias: c.qkvBias, backend }));
    this.vProj = this.register('v_proj', new Linear(C, kv, { bias: c.qkvBias, backend }));
    this.oProj = this.register('o_proj', new Linear(q, C, { bias: c.oBias, backend }));
  }

  private heads(proj: Module & { forward(t: Tensor): Tensor }, x: Tensor, n: number): Tensor {
    const [B, T] = x.shape;
    const p = proj.forward(x); // [B, T, n*D]
    const r = reshape(p, [B, T, n, this.headDim]);
    return permute(r, [0, 2, 1, 3]); // [B, n, T, D]
  }

  forward(x: Tensor, kvCache?: KVCache): Tensor {
    if (!kvCache) return perHead(this, x);
    const [B, T] = x.shape;
    const D = this.headDim;
    const past = kvCache.length;
    const q0 = this.heads(this.qProj, x, this.nHead);
    const k0 = this.heads(this.kProj, x, this.nKvHead);
    let v = this.heads(this.vProj, x, this.nKvHead);
    const { cos, sin } = ropeCosSin(D, ropeLength(past + T, this.config.maxPositionEmbeddings), this.ropeTheta, x.backend.name);
    const c = narrow(cos, 0, past, T); // [T, D] at positions past..past+T-1
    const s = narrow(sin, 0, past, T);
    const q = applyRope(q0, c, s);
    let k = applyRope(k0, c, s);
    ({ k, v } = kvCache.update(this.layerIdx, k, v)); // [B, Hkv, past + T, D]
    const rep = this.nHead / this.nKvHead;
    const kr = repeatKv(k, rep); // [B, H, past + T, D]
    const vr = repeatKv(v, rep);
    const y = scaledDotProductAttention(q, kr, vr, { causal: true }); // [B, H, T, D]
    const t = permute(y, [0, 2, 1, 3]); // [B, T, H, D]
    const merged = reshape(t, [B, T, this.nHead * D]);
    return this.oProj.forward(merged); // [B, T, C]
  }
}

/**
 * Without a KV cache: q, k, v stay [B, T, heads, D] views of the projections, which attention
 * reads in place (no permute before or after); RoPE tables broadcast as [T, 1, D].
 */
function perHead(attn: LlamaAttention, x: Tensor): Tensor {
  const [B, T] = x.shape;
  const D = attn.headDim;
  const view = (proj: Linear, n: number): Tensor => reshape(proj.forward(x), [B, T, n, D]); // [B, T, n, D]
  const { cos, sin } = ropeCosSin(D, ropeLength(T, attn.config.maxPositionEmbeddings), attn.ropeTheta, x.backend.name);
  const c = reshape(narrow(cos, 0, 0, T), [T, 1, D]); // positions 0..T-1
  const s = reshape(narrow(sin, 0, 0, T), [T, 1, D]);
  const q = applyRope(view(attn.qProj, attn.nHead), c, s);
  const k = applyRope(view(attn.kProj, attn.nKvHead), c, s);
  const v = view(attn.vProj, attn.nKvHead);
  const rep = attn.nHead / attn.nKvHead;
  // repeat_kv on the head axis: [B, T, Hkv, D] -> [B, T, Hkv * rep, D]
  const full = (t: Tensor): Tensor => (rep === 1 ? t : reshape(expand(reshape(t, [B, T, attn.nKvHead, 1, D]), [B, T, attn.nKvHead, rep, D]), [B, T, attn.nHead, D]));
  const y = scaledDotProductAttention(q, full(k), full(v), { causal: true, layout: 'bthd' }); // [B, T, H, D]
  return attn.oProj.forward(reshape(y, [B, T, attn.nHead * D])); // [B, T, C]
}

/** x + self_attn(input_layernorm(x)), then x + mlp(post_attention_layernorm(x)). */
export class LlamaDecoderLayer extends Module {
  selfAttn: LlamaAttention;
  mlp: SwiGLUMLP;
  inputLayernorm: RMSNorm;
  postAttentionLayernorm: RMSNorm;

  constructor(c: LlamaConfig, layerIdx: number, opts: PretrainedModelOptions = {}) {
    super();
    const backend = opts.backend;
    this.selfAttn = this.register('self_attn', new LlamaAttention(c, layerIdx, opts));
    this.mlp = this.register('mlp', new SwiGLUMLP(c.hiddenSize, c.intermediateSize, { bias: c.mlpBias, backend }));
    this.inputLayernorm = this.register('input_layernorm', new RMSNorm(c.hiddenSize, c.rmsNormEps, { backend }));
    this.postAttentionLayernorm = this.register('post_attention_layernorm', new RMSNorm(c.hiddenSize, c.rmsNormEps, { backend }));
  }

  forward(x: Tensor, kvCache?: KVCache): Tensor {
    const n1 = this.inputLayernorm.forward(x);
    const a = this.selfAttn.forward(n1, kvCache);
    const h = add(x, a);
    const n2 = this.postAttentionLayernorm.forward(h);
    const m = this.mlp.forward(n2);
    return add(h, m);
  }
}

/** The decoder stack (`model.*`): embed_tokens, the layers, norm. Returns hidden states. */
export class LlamaModel extends Module {
  embedTokens: Embedding;
  layers: ModuleList<LlamaDecoderLayer>;
  norm: RMSNorm;

  constructor(readonly config: LlamaConfig, opts: PretrainedModelOptions = {}) {
    super();
    const c = config;
    this.embedTokens = this.register('embed_tokens', new Embedding(c.vocabSize, c.hiddenSize, { backend: opts.backend }));
    const layers: LlamaDecoderLayer[] = [];
    for (let i = 0; i < c.numHiddenLayers; i++) layers.push(new LlamaDecoderLayer(c, i, opts));
    this.layers = this.register('layers', new ModuleList(layers));
    this.norm = this.register('norm', new RMSNorm(c.hiddenSize, c.rmsNormEps, { backend: opts.backend }));
  }

  forward(ids: Tensor, kvCache?: KVCache): Tensor {
    let x = this.embedTokens.forward(ids); // [B, T, C]
    for (const layer of this.layers) x = layer.forward(x, kvCache);
    if (kvCache) kvCache.length += ids.shape[1];
    return this.norm.forward(x);
  }
}

/**
 * LLaMA / Mistral / Qwen2 with the LM head (`lm_head`, tied to embed_tokens when the config says so).
 * @example const model = new LlamaForCausalLM(parseConfig(json) as LlamaConfig);
 */
export class LlamaForCausalLM extends PreTrainedModel {
  readonly config: LlamaConfig;
  readonly baseModelPrefix = 'model';
  model: LlamaModel;
  lmHead: Linear;

  constructor(config: LlamaConfig, opts: PretrainedModelOptions = {}) {
    super();
    this.config = config;
    this.model = this.register('model', new LlamaModel(config, opts));
    this.lmHead = this.register('lm_head', new Linear(config.hiddenSize, config.vocabSize, { bias: false, backend: opts.backend }));
    this.initWeights();
    this.tieWeights();
  }

  /** transformers' _init_weights: N(0, initializer_range) for Linears and embeddings, zero biases. */
  private initWeights(): void {
    const std = typeof this.config.raw.initializer_range === 'number' ? this.config.raw.initializer_range : 0.02;
    for (const [, m] of this.namedModules()) {
      if (m instanceof Linear) {
        normal_(m.weight, 0, std);
        if (m.bias) constant_(m.bias, 0);
      } else if (m instanceof Embedding) {
        normal_(m.weight, 0, std);
      }
    }
  }

  inputEmbeddings(): Embedding {
    return this.model.embedTokens;
  }

  get maxPositions(): number {
    return this.config.slidingWindow ?? this.config.maxPositionEmbeddings;
  }

  protected override positionsField(): string {
    return this.config.slidingWindow !== null ? 'sliding_window (lowrank has no sliding-window attention; sequences up to the window are exact)' : 'max_position_embeddings';
  }

  forward(ids: Tensor, opts: CausalLMForwardOptions = {}): CausalLMOutput {
    this.checkInput(ids, opts.kvCache);
    const h = this.model.forward(ids, opts.kvCache); // [B, T, C]
    const logits = this.lmHead.forward(h); // [B, T, V]
    return causalLmLoss(logits, opts);
  }
}

/** Mistral: the LLaMA network (no biases; sliding window capped, see LlamaConfig.slidingWindow). */
export class MistralForCausalLM extends LlamaForCausalLM {}

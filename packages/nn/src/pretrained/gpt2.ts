/**
 * GPT-2 (transformers' GPT2LMHeadModel), with its module names and
 * state-dict keys: `transformer.wte`, `transformer.wpe`,
 * `transformer.h.{i}.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}`,
 * `transformer.ln_f`, `lm_head` (tied to wte). The projections are Conv1D
 * (weights `[in, out]`); c_attn packs q, k, v along its output axis.
 */
import {
  Tensor, add, arange, narrow, permute, reshape, scaledDotProductAttention,
} from '@lowrank/core';
import { Module, ModuleList } from '../module.ts';
import { Conv1D, Dropout, Embedding, GELU, KVCache, LayerNorm, Linear } from '../layers.ts';
import { constant_, normal_ } from '../init.ts';
import type { Gpt2Config } from './config.ts';
import { PreTrainedModel, causalLmLoss, type CausalLMForwardOptions, type CausalLMOutput, type PretrainedModelOptions } from './model.ts';

/** Self-attention with the fused `c_attn` ([C, 3C]) and `c_proj`. */
export class GPT2Attention extends Module {
  readonly nHead: number;
  readonly headDim: number;
  readonly scale: number;
  cAttn: Conv1D;
  cProj: Conv1D;
  residDropout: Dropout;

  constructor(c: Gpt2Config, readonly layerIdx: number, opts: PretrainedModelOptions = {}) {
    super();
    const C = c.hiddenSize;
    this.nHead = c.numAttentionHeads;
    this.headDim = c.headDim;
    let scale = c.scaleAttnWeights ? 1 / Math.sqrt(this.headDim) : 1;
    if (c.scaleAttnByInverseLayerIdx) scale /= layerIdx + 1;
    this.scale = scale;
    this.cAttn = this.register('c_attn', new Conv1D(C, 3 * C, { backend: opts.backend }));
    this.cProj = this.register('c_proj', new Conv1D(C, C, { backend: opts.backend }));
    // NOTE: attn_pdrop (dropout on the attention probabilities) is not applied; the fused attention kernel has none.
    this.residDropout = this.register('resid_dropout', new Dropout(c.residPdrop));
  }

  forward(x: Tensor, kvCache?: KVCache): Tensor {
    const [B, T, C] = x.shape;
    const H = this.nHead;
    const D = this.headDim;
    const qkv = this.cAttn.forward(x); // [B, T, 3C]
    const r = reshape(qkv, [B, T, 3, H, D]);
    if (!kvCache) {
      // Attention reads [B, T, H, D] per head in place: no permute before or after.
      const part = (i: number): Tensor => reshape(narrow(r, 2, i, 1), [B, T, H, D]);
      const y = scaledDotProductAttention(part(0), part(1), part(2), { causal: true, scale: this.scale, layout: 'bthd' }); // [B, T, H, D]
      return this.residDropout.forward(this.cProj.forward(reshape(y, [B, T, C]))); // [B, T, C]
    }
    const p = permute(r, [2, 0, 3, 1, 4]); // [3, B, H, T, D]
    const part = (i: number): Tensor => reshape(narrow(p, 0, i, 1), [B, H, T, D]);
    const q = part(0);
    let k = part(1);
    let v = part(2);
    ({ k, v } = kvCache.update(this.layerIdx, k, v)); // [B, H, past + T, D]
    const y = scaledDotProductAttention(q, k, v, { causal: true, scale: this.scale }); // [B, H, T, D]
    const t = permute(y, [0, 2, 1, 3]); // [B, T, H, D]
    const merged = reshape(t, [B, T, C]);
    const o = this.cProj.forward(merged); // [B, T, C]
    return this.residDropout.forward(o);
  }
}

/** c_proj(gelu_new(c_fc(x))), then dropout. */
export class GPT2MLP extends Module {
  cFc: Conv1D;
  act: GELU;
  cProj: Conv1D;
  dropout: Dropout;

  constructor(c: Gpt2Config, opts: PretrainedModelOptions = {}) {
    super();
    this.cFc = this.register('c_fc', new Conv1D(c.hiddenSize, c.intermediateSize, { backend: opts.backend }));
    this.act = this.register('act', new GELU());
    this.cProj = this.register('c_proj', new Conv1D(c.intermediateSize, c.hiddenSize, { backend: opts.backend }));
    this.dropout = this.register('dropout', new Dropout(c.residPdrop));
  }

  forward(x: Tensor): Tensor {
    const u = this.cFc.forward(x); // [B, T, inner]
    const h = this.act.forward(u);
    const d = this.cProj.forward(h); // [B, T, C]
    return this.dropout.forward(d);
  }
}

/** x + attn(ln_1(x)), then x + mlp(ln_2(x)). */
export class GPT2Block extends Module {
  ln1: LayerNorm;
  attn: GPT2Attention;
  ln2: LayerNorm;
  mlp: GPT2MLP;

  constructor(c: Gpt2Config, layerIdx: number, opts: PretrainedModelOptions = {}) {
    super();
    const eps = c.layerNormEpsilon;
    this.ln1 = this.register('ln_1', new LayerNorm(c.hiddenSize, eps, { backend: opts.backend }));
    this.attn = this.register('attn', new GPT2Attention(c, layerIdx, opts));
    this.ln2 = this.register('ln_2', new LayerNorm(c.hiddenSize, eps, { backend: opts.backend }));
    this.mlp = this.register('mlp', new GPT2MLP(c, opts));
  }

  forward(x: Tensor, kvCache?: KVCache): Tensor {
    const n1 = this.ln1.forward(x);
    const a = this.attn.forward(n1, kvCache);
    const h = add(x, a);
    const n2 = this.ln2.forward(h);
    const m = this.mlp.forward(n2);
    return add(h, m);
  }
}

/** The decoder stack (`transformer.*`): wte + wpe, the blocks, ln_f. Returns hidden states. */
export class GPT2Model extends Module {
  wte: Embedding;
  wpe: Embedding;
  drop: Dropout;
  h: ModuleList<GPT2Block>;
  lnF: LayerNorm;

  constructor(readonly config: Gpt2Config, opts: PretrainedModelOptions = {}) {
    super();
    const c = config;
    this.wte = this.register('wte', new Embedding(c.vocabSize, c.hiddenSize, { backend: opts.backend }));
    this.wpe = this.register('wpe', new Embedding(c.maxPositionEmbeddings, c.hiddenSize, { backend: opts.backend }));
    this.drop = this.register('drop', new Dropout(c.embdPdrop));
    const blocks: GPT2Block[] = [];
    for (let i = 0; i < c.numHiddenLayers; i++) blocks.push(new GPT2Block(c, i, opts));
    this.h = this.register('h', new ModuleList(blocks));
    this.lnF = this.register('ln_f', new LayerNorm(c.hiddenSize, c.layerNormEpsilon, { backend: opts.backend }));
  }

  forward(ids: Tensor, kvCache?: KVCache): Tensor {
    const T = ids.shape[1];
    const past = kvCache?.length ?? 0;
    const tok = this.wte.forward(ids); // [B, T, C]
    const all = arange(past + T, { dtype: 'int32', backend: ids.backend.name });
    const pos = narrow(all, 0, past, T); // [T]
    const pe = this.wpe.forward(pos); // [T, C]
    let x = add(tok, pe); // [B, T, C]
    x = this.drop.forward(x);
    for (const block of this.h) x = block.forward(x, kvCache);
    if (kvCache) kvCache.length += T;
    return this.lnF.forward(x);
  }
}

/**
 * GPT-2 with its LM head (tied to `transformer.wte` unless the config unties it).
 * @example const model = new GPT2LMHeadModel(parseConfig(json) as Gpt2Config); const { logits } = model.forward(ids);
 */
export class GPT2LMHeadModel extends PreTrainedModel {
  readonly config: Gpt2Config;
  readonly baseModelPrefix = 'transformer';
  transformer: GPT2Model;
  lmHead: Linear;

  constructor(config: Gpt2Config, opts: PretrainedModelOptions = {}) {
    super();
    this.config = config;
    this.transformer = this.register('transformer', new GPT2Model(config, opts));
    this.lmHead = this.register('lm_head', new Linear(config.hiddenSize, config.vocabSize, { bias: false, backend: opts.backend }));
    this.initWeights();
    this.tieWeights();
  }

  /** transformers' _init_weights: N(0, initializer_range), c_proj scaled by 1/sqrt(2 n_layer), zero biases, unit LayerNorm. */
  private initWeights(): void {
    const std = typeof this.config.raw.initializer_range === 'number' ? this.config.raw.initializer_range : 0.02;
    for (const [name, m] of this.namedModules()) {
      if (m instanceof Conv1D || m instanceof Linear) {
        const resid = name.endsWith('c_proj');
        normal_(m.weight, 0, resid ? std / Math.sqrt(2 * this.config.numHiddenLayers) : std);
        if (m.bias) constant_(m.bias, 0);
      } else if (m instanceof Embedding) {
        normal_(m.weight, 0, std);
      }
    }
  }

  inputEmbeddings(): Embedding {
    return this.transformer.wte;
  }

  get maxPositions(): number {
    return this.config.maxPositionEmbeddings;
  }

  forward(ids: Tensor, opts: CausalLMForwardOptions = {}): CausalLMOutput {
    this.checkInput(ids, opts.kvCache);
    const h = this.transformer.forward(ids, opts.kvCache); // [B, T, C]
    const logits = this.lmHead.forward(h); // [B, T, V]
    return causalLmLoss(logits, opts);
  }
}

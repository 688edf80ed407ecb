import {
  Rng, Tensor, add, arange, crossEntropy, globalRng, isGradEnabled, narrow, noGrad, recompute,
  tensor, tidy, type HostArray, type NestedArray,
} from '@lowrank/core';
import { Module, ModuleList } from '../module.ts';
import {
  CausalSelfAttention, Dropout, Embedding, KVCache, LayerNorm, Linear, MLP, RMSNorm, SwiGLUMLP,
} from '../layers.ts';
import { constant_, normal_ } from '../init.ts';

/** The fields of the fixture configs (see shared/fixtures/README.md). */
export interface TransformerConfig {
  flavour: 'gpt' | 'llama';
  vocabSize: number;
  blockSize: number;
  nLayer: number;
  nHead: number;
  nEmbd: number;
  headDim: number;
  /** MLP hidden size. */
  intermediateSize: number;
  normEps: number;
  bias: boolean;
  tieWordEmbeddings: boolean;
  positionEmbedding: 'learned' | 'rope';
  ropeTheta?: number;
  norm: 'layerNorm' | 'rmsNorm';
  mlp: 'gelu_tanh' | 'swiglu';
  dropout: number;
}

/** Config with everything but the flavour optional; the flavour fills in its defaults. */
export type TransformerConfigInput = Partial<TransformerConfig> & Pick<TransformerConfig, 'flavour' | 'vocabSize'>;

/**
 * Completes a config from its flavour's defaults (GPT-2 or LLaMA conventions).
 * @example resolveConfig({ flavour: 'llama', vocabSize: 32000 })
 */
export function resolveConfig(c: TransformerConfigInput): TransformerConfig {
  const gpt = c.flavour === 'gpt';
  const nEmbd = c.nEmbd ?? 128;
  const nHead = c.nHead ?? 4;
  const out: TransformerConfig = {
    flavour: c.flavour,
    vocabSize: c.vocabSize,
    blockSize: c.blockSize ?? 64,
    nLayer: c.nLayer ?? 4,
    nHead,
    nEmbd,
    headDim: c.headDim ?? nEmbd / nHead,
    intermediateSize: c.intermediateSize ?? (gpt ? 4 * nEmbd : 256 * Math.ceil(Math.floor((8 * nEmbd) / 3) / 256)),
    normEps: c.normEps ?? (gpt ? 1e-5 : 1e-6),
    bias: c.bias ?? gpt,
    tieWordEmbeddings: c.tieWordEmbeddings ?? false,
    positionEmbedding: c.positionEmbedding ?? (gpt ? 'learned' : 'rope'),
    norm: c.norm ?? (gpt ? 'layerNorm' : 'rmsNorm'),
    mlp: c.mlp ?? (gpt ? 'gelu_tanh' : 'swiglu'),
    dropout: c.dropout ?? 0,
  };
  if (out.positionEmbedding === 'rope') out.ropeTheta = c.ropeTheta ?? 10000;
  const bad: string[] = [];
  for (const k of ['vocabSize', 'blockSize', 'nLayer', 'nHead', 'nEmbd', 'headDim', 'intermediateSize'] as const) {
    if (!(Number.isInteger(out[k]) && out[k] > 0)) bad.push(`${k} must be a positive integer, got ${out[k]}`);
  }
  if (!(out.dropout >= 0 && out.dropout < 1)) bad.push(`dropout must be in [0, 1), got ${out.dropout}`);
  if (bad.length) throw new Error(`TransformerLM config: ${bad.join('; ')}`);
  return out;
}

export interface ModelOptions {
  /** Backend for the parameters (`'meta'` builds shapes only, instantly). */
  backend?: string;
}

export interface ForwardOptions {
  /** int32 [B, T] next-token targets; -100 is ignored. */
  targets?: Tensor;
  /** Incremental decoding: positions continue from `kvCache.length`, which advances by T. */
  kvCache?: KVCache;
}

export interface ForwardOutput {
  /** [B, T, vocabSize] */
  logits: Tensor;
  /** Mean cross-entropy over non-ignored targets, when targets were given. */
  loss?: Tensor;
}

export interface GenerateOptions {
  maxNewTokens: number;
  /** Softmax temperature; 0 means greedy (argmax). Default 1. */
  temperature?: number;
  /** Sample among the k most likely tokens only. */
  topK?: number;
  /** Seeds a private generator, so sampling leaves the global RNG alone. */
  seed?: number;
  /** Reuse keys/values of past tokens (default true); same tokens as without. */
  useCache?: boolean;
}

/** A pre-norm decoder block: x + attn(norm(x)), then x + mlp(norm(x)). */
export class Block extends Module {
  inputLayernorm: LayerNorm | RMSNorm;
  selfAttn: CausalSelfAttention;
  postAttentionLayernorm: LayerNorm | RMSNorm;
  mlp: MLP | SwiGLUMLP;

  constructor(c: TransformerConfig, opts: ModelOptions = {}) {
    super();
    const backend = opts.backend;
    const norm = (): LayerNorm | RMSNorm => c.norm === 'layerNorm'
      ? new LayerNorm(c.nEmbd, c.normEps, { bias: c.bias, backend })
      : new RMSNorm(c.nEmbd, c.normEps, { backend });
    this.inputLayernorm = this.register('input_layernorm', norm());
    this.selfAttn = this.register('self_attn', new CausalSelfAttention({
      nEmbd: c.nEmbd, nHead: c.nHead, headDim: c.headDim, bias: c.bias, dropout: c.dropout,
      positionEmbedding: c.positionEmbedding, ropeTheta: c.ropeTheta, blockSize: c.blockSize, backend,
    }));
    this.postAttentionLayernorm = this.register('post_attention_layernorm', norm());
    const mlpOpts = { bias: c.bias, dropout: c.dropout, backend };
    this.mlp = this.register('mlp', c.mlp === 'gelu_tanh'
      ? new MLP(c.nEmbd, c.intermediateSize, mlpOpts)
      : new SwiGLUMLP(c.nEmbd, c.intermediateSize, mlpOpts));
  }

  forward(x: Tensor, kvCache?: KVCache, layerIndex = 0): Tensor {
    // No release calls: the forward scope frees what no backward reads.
    const n1 = this.inputLayernorm.forward(x);
    const h = this.selfAttn.forward(n1, { kvCache, layerIndex, residual: x }); // x + attn(n1) [B, T, C]
    const n2 = this.postAttentionLayernorm.forward(h);
    return this.mlp.forward(n2, h); // h + mlp(n2) [B, T, C]
  }
}

/**
 * A decoder-only transformer LM in two flavours (GPT-2 and LLaMA), with
 * Hugging Face state-dict keys. Init: N(0, 0.02) for Linears and embeddings,
 * zero biases, and o_proj/down_proj scaled by 1/sqrt(2 nLayer) (GPT-2).
 *
 * @example const model = new TransformerLM(gptTiny()); const { logits, loss } = model.forward(ids, { targets });
 */
export class TransformerLM extends Module {
  readonly config: TransformerConfig;
  embedTokens: Embedding;
  embedPositions: Embedding | null = null;
  drop: Dropout;
  layers: ModuleList<Block>;
  norm: LayerNorm | RMSNorm;
  lmHead: Linear;
  /** See `gradientCheckpointingEnable()`. */
  gradientCheckpointing = false;

  constructor(config: TransformerConfigInput, opts: ModelOptions = {}) {
    super();
    const c = resolveConfig(config);
    this.config = c;
    const backend = opts.backend;
    this.embedTokens = this.register('embed_tokens', new Embedding(c.vocabSize, c.nEmbd, { backend }));
    if (c.positionEmbedding === 'learned') {
      this.embedPositions = this.register('embed_positions', new Embedding(c.blockSize, c.nEmbd, { backend }));
    }
    this.drop = this.register('drop', new Dropout(c.dropout));
    const blocks: Block[] = [];
    for (let i = 0; i < c.nLayer; i++) blocks.push(new Block(c, { backend }));
    this.layers = this.register('layers', new ModuleList(blocks));
    this.norm = this.register('norm', c.norm === 'layerNorm'
      ? new LayerNorm(c.nEmbd, c.normEps, { bias: c.bias, backend })
      : new RMSNorm(c.nEmbd, c.normEps, { backend }));
    this.lmHead = this.register('lm_head', new Linear(c.nEmbd, c.vocabSize, { bias: false, backend }));
    this.initWeights();
    if (c.tieWordEmbeddings) {
      const untied = this.lmHead.weight;
      this.lmHead.registerParameter('weight', this.embedTokens.weight);
      untied.dispose();
    }
  }

  private initWeights(): void {
    const residStd = 0.02 / Math.sqrt(2 * this.config.nLayer);
    for (const [name, m] of this.namedModules()) {
      if (m instanceof Linear) {
        const residual = name.endsWith('o_proj') || name.endsWith('down_proj');
        normal_(m.weight, 0, residual && this.config.flavour === 'gpt' ? residStd : 0.02);
        if (m.bias) constant_(m.bias, 0);
      } else if (m instanceof Embedding) {
        normal_(m.weight, 0, 0.02);
      }
    }
  }

  /**
   * ids int32 [B, T] -> logits [B, T, vocab] (+ mean cross-entropy loss when targets are given).
   * @example const { loss } = model.forward(x, { targets: y }); loss!.backward();
   */
  forward(ids: Tensor, opts: ForwardOptions = {}): ForwardOutput {
    if (ids.rank !== 2 || ids.dtype !== 'int32') throw new Error(`TransformerLM.forward: ids must be int32 [B, T], got ${ids.describe()}`);
    const [B, T] = ids.shape;
    const past = opts.kvCache?.length ?? 0;
    if (past + T > this.config.blockSize) {
      throw new Error(`TransformerLM.forward: ${past + T} positions exceed blockSize ${this.config.blockSize}`);
    }
    let x = this.embedTokens.forward(ids); // [B, T, C]
    if (this.embedPositions) {
      const all = arange(this.config.blockSize, { dtype: 'int32', backend: ids.backend.name });
      const pos = narrow(all, 0, past, T); // [T]
      const p = this.embedPositions.forward(pos); // [T, C]
      x = add(x, p); // [B, T, C] + [T, C]
    }
    x = this.drop.forward(x);
    let i = 0;
    const rerun = this.gradientCheckpointing && this.training && !opts.kvCache && isGradEnabled();
    for (const block of this.layers) {
      const layer = i++;
      const next = rerun
        ? recompute((h) => block.forward(h), [x]) // keeps only x; the block reruns in backward
        : block.forward(x, opts.kvCache, layer);
      x = next; // [B, T, C]
    }
    if (opts.kvCache) opts.kvCache.length += T;
    const n = this.norm.forward(x);
    const logits = this.lmHead.forward(n); // [B, T, vocab]
    if (!opts.targets) return { logits };
    if (opts.targets.shape[0] !== B || opts.targets.shape[1] !== T) {
      throw new Error(`TransformerLM.forward: targets ${opts.targets.describe()} must match ids [${B}, ${T}]`);
    }
    return { logits, loss: crossEntropy(logits, opts.targets, { ignoreIndex: -100 }) };
  }

  /**
   * Recompute each block's activations during backward instead of keeping
   * them (Hugging Face's `gradient_checkpointing_enable()`): activation memory
   * drops to one block's worth plus each block's input, for about one more
   * forward pass of compute. Applies in training mode only.
   * @example model.gradientCheckpointingEnable();
   */
  gradientCheckpointingEnable(): this {
    this.gradientCheckpointing = true;
    return this;
  }

  gradientCheckpointingDisable(): this {
    this.gradientCheckpointing = false;
    return this;
  }

  /**
   * Appends `maxNewTokens` tokens to each row of ids [B, T]: greedy when
   * temperature is 0, else softmax(logits / temperature) over the topK best.
   * With `useCache` (default) past keys/values are reused; the tokens equal
   * those of the uncached path. Returns int32 [B, T + maxNewTokens].
   * @example const out = model.generate(tensor([[0]], { dtype: 'int32' }), { maxNewTokens: 20, temperature: 0 });
   */
  generate(ids: Tensor, opts: GenerateOptions): Tensor {
    const run = this.generation(ids, opts);
    let done = false;
    try {
      let r = run.next();
      while (!r.done) r = run.next(readAndFree(r.value, ids, (t) => t.dataSync()));
      done = true;
      return r.value;
    } finally {
      if (!done) run.return(ids);
    }
  }

  /**
   * `generate` with asynchronous readback of each step's logits, so it runs
   * on every backend (on WebGPU the synchronous readers throw).
   * @example const out = await model.generateAsync(tensor([[0]], { dtype: 'int32' }), { maxNewTokens: 20 });
   */
  async generateAsync(ids: Tensor, opts: GenerateOptions): Promise<Tensor> {
    const run = this.generation(ids, opts);
    let done = false;
    try {
      let r = run.next();
      while (!r.done) r = run.next(await readAndFree(r.value, ids, (t) => t.data()));
      done = true;
      return r.value;
    } finally {
      if (!done) run.return(ids);
    }
  }

  /** The sampling loop; it yields each tensor it needs read back and receives its values. */
  private *generation(ids: Tensor, opts: GenerateOptions): Generator<Tensor, Tensor, HostArray> {
    const { maxNewTokens, topK } = opts;
    const temperature = opts.temperature ?? 1;
    const useCache = opts.useCache ?? true;
    if (ids.rank !== 2 || ids.dtype !== 'int32') throw new Error(`generate: ids must be int32 [B, T], got ${ids.describe()}`);
    if (!ids.backend.hasStorage) throw new Error(`generate: the '${ids.backend.name}' backend holds no values to sample from`);
    const rng = opts.seed === undefined ? globalRng : new Rng(opts.seed);
    const [B, T0] = ids.shape;
    const V = this.config.vocabSize;
    const bs = this.config.blockSize;
    const rows: number[][] = [];
    const flat = yield ids;
    for (let b = 0; b < B; b++) rows.push(Array.from(flat.subarray(b * T0, (b + 1) * T0)));
    const cache = useCache ? new KVCache(this.config.nLayer) : null;
    const wasTraining = this.training;
    this.eval();
    try {
      for (let step = 0; step < maxNewTokens; step++) {
        const len = rows[0].length;
        // Feed only the new token when the cache holds the rest; restart it when the window slides.
        let feedFrom = Math.max(0, len - bs);
        if (cache && cache.length > 0 && cache.length < bs && len - cache.length === 1 && len <= bs) feedFrom = len - 1;
        else if (cache) cache.dispose();
        const lastLogits = tidy(() => noGrad(() => {
          const window = rows.map((r) => r.slice(feedFrom));
          const input = tensor(window as NestedArray, { dtype: 'int32', backend: ids.backend.name });
          const { logits } = this.forward(input, { kvCache: cache ?? undefined }); // [B, t, V]
          const t = window[0].length;
          return narrow(logits, 1, t - 1, 1); // [B, 1, V]
        }));
        const last = yield lastLogits;
        for (let b = 0; b < B; b++) rows[b].push(sample(last.subarray(b * V, (b + 1) * V), temperature, topK, rng));
      }
    } finally {
      cache?.dispose();
      this.train(wasTraining);
    }
    return tensor(rows as NestedArray, { dtype: 'int32', backend: ids.backend.name });
  }
}

/** Reads a tensor the sampling loop yielded, then frees it (never the caller's ids). */
function readAndFree<R>(t: Tensor, ids: Tensor, read: (t: Tensor) => R): R {
  if (t === ids) return read(t);
  let out: R;
  try {
    out = read(t);
  } catch (err) {
    t.dispose();
    throw err;
  }
  if (out instanceof Promise) return out.finally(() => t.dispose()) as R;
  t.dispose();
  return out;
}

/** Picks a token from one row of logits. */
function sample(logits: ArrayLike<number>, temperature: number, topK: number | undefined, rng: Rng): number {
  const n = logits.length;
  if (temperature <= 0) {
    let best = 0;
    for (let i = 1; i < n; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  let order = Array.from({ length: n }, (_, i) => i);
  if (topK !== undefined && topK < n) {
    order.sort((a, b) => logits[b] - logits[a] || a - b);
    order = order.slice(0, Math.max(1, topK));
  }
  let max = -Infinity;
  for (const i of order) max = Math.max(max, logits[i] / temperature);
  const probs = order.map((i) => Math.exp(logits[i] / temperature - max));
  const total = probs.reduce((s, p) => s + p, 0);
  let u = rng.random() * total;
  for (let j = 0; j < order.length; j++) {
    u -= probs[j];
    if (u < 0) return order[j];
  }
  return order[order.length - 1];
}

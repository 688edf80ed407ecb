/**
 * config.json of a Hugging Face causal LM, parsed into a typed config. Every
 * size comes from the file (transformers' class defaults fill the optional
 * fields); a field the model would need but lowrank does not implement is an
 * error naming the field and its value, never a silently different model.
 * Sizes are checked (positive safe integers within bounds, divisibility)
 * before anything is allocated.
 */

/** The `model_type` values lowrank builds. */
export const SUPPORTED_MODEL_TYPES = ['gpt2', 'llama', 'mistral', 'qwen2'] as const;
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

/** The transformers class name of each architecture (written to config.json's `architectures`). */
export const ARCHITECTURES: Record<ModelType, string> = {
  gpt2: 'GPT2LMHeadModel',
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
};

/** Fields every architecture has, in lowrank's camelCase. */
export interface CommonConfig {
  modelType: ModelType;
  vocabSize: number;
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Key/value heads: < numAttentionHeads is grouped-query attention. */
  numKeyValueHeads: number;
  headDim: number;
  intermediateSize: number;
  /** Longest sequence the model accepts (position table / RoPE range). */
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenId: number | number[] | null;
  padTokenId: number | null;
  /** The config.json object as read (written back by savePretrained, unknown fields included). */
  raw: Readonly<Record<string, unknown>>;
}

/** GPT2LMHeadModel. */
export interface Gpt2Config extends CommonConfig {
  modelType: 'gpt2';
  layerNormEpsilon: number;
  activationFunction: 'gelu_new' | 'gelu_pytorch_tanh' | 'gelu_fast';
  scaleAttnWeights: boolean;
  scaleAttnByInverseLayerIdx: boolean;
  embdPdrop: number;
  residPdrop: number;
  attnPdrop: number;
}

/** LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM. */
export interface LlamaConfig extends CommonConfig {
  modelType: 'llama' | 'mistral' | 'qwen2';
  rmsNormEps: number;
  ropeTheta: number;
  hiddenAct: 'silu';
  /** Bias on q_proj, k_proj, v_proj (qwen2: always; llama: attention_bias). */
  qkvBias: boolean;
  /** Bias on o_proj (llama's attention_bias). */
  oBias: boolean;
  mlpBias: boolean;
  /**
   * Sliding-window attention span when the config turns it on, else null.
   * Sequences up to this length are exact; longer ones are refused.
   */
  slidingWindow: number | null;
  attentionDropout: number;
}

export type PretrainedConfig = Gpt2Config | LlamaConfig;

/** Bounds that keep a hostile config from asking for absurd allocations. */
export const CONFIG_LIMITS = {
  vocabSize: 1 << 22,
  hiddenSize: 1 << 16,
  numHiddenLayers: 1024,
  numAttentionHeads: 1024,
  headDim: 4096,
  intermediateSize: 1 << 20,
  maxPositionEmbeddings: 1 << 22,
  /** Elements of one parameter tensor. */
  tensorElements: 2 ** 31 - 1,
  /** Parameters of the whole model. */
  totalParameters: 2 ** 36,
} as const;

type Json = Record<string, unknown>;

class ConfigReader {
  constructor(readonly json: Json, readonly where: string) {}

  fail(field: string, msg: string): never {
    throw new Error(`${this.where}: ${field} ${msg}`);
  }

  has(field: string): boolean {
    return Object.hasOwn(this.json, field) && this.json[field] !== undefined;
  }

  get(field: string): unknown {
    return Object.hasOwn(this.json, field) ? this.json[field] : undefined;
  }

  /** A positive integer <= max; `fallback` when absent (undefined: required). */
  int(field: string, max: number, fallback?: number | (() => number)): number {
    let v = this.get(field);
    if (v === undefined || v === null) {
      if (fallback === undefined) this.fail(field, 'is missing (a positive integer is required)');
      v = typeof fallback === 'function' ? fallback() : fallback;
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) this.fail(field, `must be a positive integer, got ${show(v)}`);
    if ((v as number) > max) this.fail(field, `${v} exceeds the supported maximum ${max}`);
    return v as number;
  }

  /** A finite number in (lo, hi) exclusive of lo (or inclusive with loInclusive). */
  num(field: string, fallback: number, lo: number, hi: number, loInclusive = false): number {
    const v = this.get(field) ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v > hi || (loInclusive ? v < lo : v <= lo)) {
      this.fail(field, `must be a number in ${loInclusive ? '[' : '('}${lo}, ${hi}], got ${show(v)}`);
    }
    return v;
  }

  bool(field: string, fallback: boolean): boolean {
    const v = this.get(field) ?? fallback;
    if (typeof v !== 'boolean') this.fail(field, `must be true or false, got ${show(v)}`);
    return v;
  }

  tokenId(field: string): number | null {
    const v = this.get(field);
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) this.fail(field, `must be a non-negative integer or null, got ${show(v)}`);
    return v;
  }

  tokenIds(field: string): number | number[] | null {
    const v = this.get(field);
    if (Array.isArray(v)) {
      if (v.length > 1024 || !v.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
        this.fail(field, `must be a token id or a list of token ids, got ${show(v)}`);
      }
      return [...(v as number[])];
    }
    return this.tokenId(field);
  }

  /** Must be absent, null, or one of `ok`. */
  onlyNull(field: string, why: string, ok: (v: unknown) => boolean = () => false): void {
    const v = this.get(field);
    if (v !== undefined && v !== null && !ok(v)) this.fail(field, `${show(v)} is not supported (${why})`);
  }
}

function show(v: unknown): string {
  try {
    const s = JSON.stringify(v);
    if (s === undefined) return String(v);
    return s.length > 120 ? `${s.slice(0, 117)}...` : s;
  } catch {
    return String(v);
  }
}

/**
 * Parses a config.json object (`where` names it in errors).
 * @example const cfg = parseConfig(JSON.parse(text), 'gpt2/config.json');
 */
export function parseConfig(json: unknown, where = 'config.json'): PretrainedConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`${where}: expected a JSON object, got ${Array.isArray(json) ? 'an array' : show(json)}`);
  }
  const r = new ConfigReader(json as Json, where);
  const modelType = r.get('model_type');
  if (typeof modelType !== 'string' || !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    r.fail('model_type', `${show(modelType)} is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
  r.onlyNull('quantization_config', 'quantized checkpoints cannot be loaded');
  const config = modelType === 'gpt2' ? parseGpt2(r) : parseLlama(r, modelType as LlamaConfig['modelType']);
  checkTotals(config, where);
  return config;
}

function common(r: ConfigReader): Pick<CommonConfig, 'bosTokenId' | 'eosTokenId' | 'padTokenId' | 'raw'> {
  return {
    bosTokenId: r.tokenId('bos_token_id'),
    eosTokenId: r.tokenIds('eos_token_id'),
    padTokenId: r.tokenId('pad_token_id'),
    raw: Object.freeze({ ...r.json }),
  };
}

const GPT2_ACTIVATIONS = ['gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'] as const;

function parseGpt2(r: ConfigReader): Gpt2Config {
  const L = CONFIG_LIMITS;
  const hiddenSize = r.int('n_embd', L.hiddenSize);
  const numAttentionHeads = r.int('n_head', L.numAttentionHeads);
  if (hiddenSize % numAttentionHeads !== 0) r.fail('n_embd', `${hiddenSize} is not divisible by n_head ${numAttentionHeads}`);
  const act = r.get('activation_function') ?? 'gelu_new';
  if (!(GPT2_ACTIVATIONS as readonly unknown[]).includes(act)) {
    r.fail('activation_function', `${show(act)} is not supported (supported: ${GPT2_ACTIVATIONS.join(', ')}; lowrank's GELU is the tanh approximation)`);
  }
  if (r.get('add_cross_attention') === true) r.fail('add_cross_attention', 'true is not supported (decoder-only models)');
  const prob = (f: string): number => r.num(f, 0.1, 0, 0.999, true);
  return {
    modelType: 'gpt2',
    vocabSize: r.int('vocab_size', L.vocabSize),
    hiddenSize,
    numHiddenLayers: r.int('n_layer', L.numHiddenLayers),
    numAttentionHeads,
    numKeyValueHeads: numAttentionHeads,
    headDim: hiddenSize / numAttentionHeads,
    intermediateSize: r.int('n_inner', L.intermediateSize, () => 4 * hiddenSize),
    maxPositionEmbeddings: r.int('n_positions', L.maxPositionEmbeddings, () => r.int('n_ctx', L.maxPositionEmbeddings, 1024)),
    tieWordEmbeddings: r.bool('tie_word_embeddings', true),
    layerNormEpsilon: r.num('layer_norm_epsilon', 1e-5, 0, 1),
    activationFunction: act as Gpt2Config['activationFunction'],
    scaleAttnWeights: r.bool('scale_attn_weights', true),
    scaleAttnByInverseLayerIdx: r.bool('scale_attn_by_inverse_layer_idx', false),
    embdPdrop: prob('embd_pdrop'),
    residPdrop: prob('resid_pdrop'),
    attnPdrop: prob('attn_pdrop'),
    ...common(r),
  };
}

/** transformers' class defaults where they differ between the three. */
const LLAMA_DEFAULTS = {
  llama: { intermediate: 11008, maxPos: 2048, slidingWindow: null },
  mistral: { intermediate: 14336, maxPos: 4096 * 32, slidingWindow: 4096 },
  qwen2: { intermediate: 22016, maxPos: 32768, slidingWindow: 4096 },
} as const;

function parseLlama(r: ConfigReader, modelType: LlamaConfig['modelType']): LlamaConfig {
  const L = CONFIG_LIMITS;
  const d = LLAMA_DEFAULTS[modelType];
  const hiddenSize = r.int('hidden_size', L.hiddenSize);
  const numAttentionHeads = r.int('num_attention_heads', L.numAttentionHeads);
  const numKeyValueHeads = r.int('num_key_value_heads', L.numAttentionHeads, numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    r.fail('num_key_value_heads', `${numKeyValueHeads} does not divide num_attention_heads ${numAttentionHeads}`);
  }
  const explicitHeadDim = r.get('head_dim') !== undefined && r.get('head_dim') !== null;
  if (!explicitHeadDim && hiddenSize % numAttentionHeads !== 0) {
    r.fail('hidden_size', `${hiddenSize} is not divisible by num_attention_heads ${numAttentionHeads} (and no head_dim is given)`);
  }
  const headDim = r.int('head_dim', L.headDim, () => hiddenSize / numAttentionHeads);
  if (headDim % 2 !== 0) r.fail('head_dim', `${headDim} must be even for rotary embeddings`);
  const hiddenAct = r.get('hidden_act') ?? 'silu';
  if (hiddenAct !== 'silu' && hiddenAct !== 'swish') r.fail('hidden_act', `${show(hiddenAct)} is not supported (supported: silu)`);
  r.onlyNull('rope_scaling', 'only unscaled RoPE is implemented', (v) => {
    const o = v as Record<string, unknown>;
    return typeof v === 'object' && !Array.isArray(v) && (o.rope_type ?? o.type) === 'default';
  });
  const maxPositionEmbeddings = r.int('max_position_embeddings', L.maxPositionEmbeddings, d.maxPos);
  const slidingWindow = parseSlidingWindow(r, modelType, maxPositionEmbeddings);
  const attentionBias = modelType === 'llama' ? r.bool('attention_bias', false) : false;
  return {
    modelType,
    vocabSize: r.int('vocab_size', L.vocabSize, modelType === 'qwen2' ? 151936 : 32000),
    hiddenSize,
    numHiddenLayers: r.int('num_hidden_layers', L.numHiddenLayers),
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    intermediateSize: r.int('intermediate_size', L.intermediateSize, d.intermediate),
    maxPositionEmbeddings,
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
    rmsNormEps: r.num('rms_norm_eps', 1e-6, 0, 1),
    ropeTheta: r.num('rope_theta', 10000, 0, 1e12),
    hiddenAct: 'silu',
    qkvBias: modelType === 'qwen2' ? true : attentionBias,
    oBias: attentionBias,
    mlpBias: modelType === 'llama' ? r.bool('mlp_bias', false) : false,
    slidingWindow,
    attentionDropout: r.num('attention_dropout', 0, 0, 0.999, true),
    ...common(r),
  };
}

function parseSlidingWindow(r: ConfigReader, modelType: LlamaConfig['modelType'], maxPos: number): number | null {
  if (modelType === 'llama') return null;
  const on = modelType === 'mistral' ? true : r.bool('use_sliding_window', false);
  if (!on) return null;
  const raw = r.has('sliding_window') ? r.get('sliding_window') : LLAMA_DEFAULTS[modelType].slidingWindow;
  if (raw === null) return null;
  const w = r.int('sliding_window', L_MAX_POS, raw as number);
  return w < maxPos ? w : null;
}

const L_MAX_POS = CONFIG_LIMITS.maxPositionEmbeddings;

/** Parameter shapes of a config, by state-dict key (lm_head included even when tied). */
export function parameterShapes(c: PretrainedConfig): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const C = c.hiddenSize;
  if (c.modelType === 'gpt2') {
    out.set('transformer.wte.weight', [c.vocabSize, C]);
    out.set('transformer.wpe.weight', [c.maxPositionEmbeddings, C]);
    for (let i = 0; i < c.numHiddenLayers; i++) {
      const p = `transformer.h.${i}.`;
      out.set(`${p}ln_1.weight`, [C]).set(`${p}ln_1.bias`, [C]);
      out.set(`${p}attn.c_attn.weight`, [C, 3 * C]).set(`${p}attn.c_attn.bias`, [3 * C]);
      out.set(`${p}attn.c_proj.weight`, [C, C]).set(`${p}attn.c_proj.bias`, [C]);
      out.set(`${p}ln_2.weight`, [C]).set(`${p}ln_2.bias`, [C]);
      out.set(`${p}mlp.c_fc.weight`, [C, c.intermediateSize]).set(`${p}mlp.c_fc.bias`, [c.intermediateSize]);
      out.set(`${p}mlp.c_proj.weight`, [c.intermediateSize, C]).set(`${p}mlp.c_proj.bias`, [C]);
    }
    out.set('transformer.ln_f.weight', [C]).set('transformer.ln_f.bias', [C]);
  } else {
    const q = c.numAttentionHeads * c.headDim;
    const kv = c.numKeyValueHeads * c.headDim;
    const I = c.intermediateSize;
    out.set('model.embed_tokens.weight', [c.vocabSize, C]);
    for (let i = 0; i < c.numHiddenLayers; i++) {
      const p = `model.layers.${i}.`;
      const proj = (name: string, o: number, inF: number, bias: boolean): void => {
        out.set(`${p}${name}.weight`, [o, inF]);
        if (bias) out.set(`${p}${name}.bias`, [o]);
      };
      proj('self_attn.q_proj', q, C, c.qkvBias);
      proj('self_attn.k_proj', kv, C, c.qkvBias);
      proj('self_attn.v_proj', kv, C, c.qkvBias);
      proj('self_attn.o_proj', C, q, c.oBias);
      proj('mlp.gate_proj', I, C, c.mlpBias);
      proj('mlp.up_proj', I, C, c.mlpBias);
      proj('mlp.down_proj', C, I, c.mlpBias);
      out.set(`${p}input_layernorm.weight`, [C]);
      out.set(`${p}post_attention_layernorm.weight`, [C]);
    }
    out.set('model.norm.weight', [C]);
  }
  out.set('lm_head.weight', [c.vocabSize, C]);
  return out;
}

/**
 * Number of parameters of a config (tied lm_head once), computed without allocating.
 * @example parameterCount(parseConfig(gpt2Json)) // 124439808 for gpt2
 */
export function parameterCount(c: PretrainedConfig): number {
  let n = 0;
  for (const [k, s] of parameterShapes(c)) {
    if (k === 'lm_head.weight' && c.tieWordEmbeddings) continue;
    n += s.reduce((a, b) => a * b, 1);
  }
  return n;
}

function checkTotals(c: PretrainedConfig, where: string): void {
  const L = CONFIG_LIMITS;
  // Per-layer products first, so a huge layer count is not multiplied out into 10^6 map entries.
  const C = c.hiddenSize;
  const biggest = Math.max(
    c.vocabSize * C,
    c.maxPositionEmbeddings * (c.modelType === 'gpt2' ? C : 1),
    c.intermediateSize * C,
    c.numAttentionHeads * c.headDim * C,
    c.modelType === 'gpt2' ? 3 * C * C : 0,
  );
  if (biggest > L.tensorElements) {
    throw new Error(`${where}: one parameter tensor would hold ${biggest} elements, over the supported ${L.tensorElements}`);
  }
  const perLayer = 4 * C * Math.max(c.numAttentionHeads * c.headDim, C) + 3 * C * c.intermediateSize;
  const total = perLayer * c.numHiddenLayers + 2 * c.vocabSize * C;
  if (total > L.totalParameters) {
    throw new Error(`${where}: the model would have about ${total.toExponential(2)} parameters, over the supported ${L.totalParameters}`);
  }
}

/**
 * The config.json object to write back: the original fields (unknown ones
 * kept), with `torch_dtype` set to the dtype of the saved weights.
 * @example const json = configToJson(model.config, 'float32');
 */
export function configToJson(c: PretrainedConfig, torchDtype: string): Record<string, unknown> {
  const out: Record<string, unknown> = { ...c.raw, torch_dtype: torchDtype };
  return Object.fromEntries(Object.keys(out).sort().map((k) => [k, out[k]]));
}

import { noGrad, tensor, type RawTensor, type Tensor } from '@lowrank/core';
import { LoraConfig, type LoraConfigInput } from './config.ts';
import type { LoraModel } from './tuner.ts';

/** Prefix of every key in a PEFT adapter file (PeftModel -> base_model (LoraModel) -> model). */
export const PEFT_PREFIX = 'base_model.model.';

/** The JSON object PEFT writes as `adapter_config.json`. */
export type PeftConfigJson = Record<string, unknown>;

/** Options shared by the readers. */
export interface ReadOptions {
  /** Receives warnings (unknown config keys); default console.warn. */
  onWarning?: (message: string) => void;
}

/**
 * The `adapter_config.json` object PEFT's LoraConfig.save_pretrained writes (keys sorted).
 * `targetNames` (the modules actually adapted) replaces `'all-linear'`, as PEFT does after injection.
 * @example JSON.stringify(loraConfigToPeftJson(cfg), null, 2)
 */
export function loraConfigToPeftJson(cfg: LoraConfig, targetNames: readonly string[] = [], inferenceMode = cfg.inferenceMode): PeftConfigJson {
  let target: string | string[];
  const t = cfg.targetModules;
  if (t === 'all-linear') target = [...new Set(targetNames.map((n) => n.slice(n.lastIndexOf('.') + 1)))].sort();
  else if (t instanceof RegExp) target = t.source;
  else if (typeof t === 'string') target = t;
  else target = [...new Set(t)].sort();
  const json: PeftConfigJson = {
    alpha_pattern: { ...cfg.alphaPattern },
    auto_mapping: null,
    base_model_name_or_path: cfg.baseModelNameOrPath,
    bias: cfg.bias,
    fan_in_fan_out: cfg.fanInFanOut,
    inference_mode: inferenceMode,
    init_lora_weights: cfg.initLoraWeights,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: cfg.loraAlpha,
    lora_dropout: cfg.loraDropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: cfg.modulesToSave ? [...cfg.modulesToSave] : null,
    peft_type: 'LORA',
    r: cfg.r,
    rank_pattern: { ...cfg.rankPattern },
    revision: null,
    target_modules: target,
    task_type: cfg.taskType,
    use_dora: false,
    use_rslora: cfg.useRslora,
  };
  return json;
}

/** Keys PEFT writes that carry no meaning here when they hold their defaults. */
const INERT_KEYS = new Set([
  'auto_mapping', 'layers_pattern', 'loftq_config', 'megatron_config', 'megatron_core', 'revision', 'peft_type',
  'use_dora', 'layers_to_transform', 'layer_replication', 'runtime_config', 'eva_config',
  'exclude_modules', 'lora_bias', 'trainable_token_indices', 'corda_config', 'qalora_group_size', 'target_parameters',
  'use_qalora', 'alora_invocation_tokens', 'arrow_config', 'ensure_weight_tying',
]);

/** adapter_config.json key -> LoraConfig field. */
const PEFT_KEYS: ReadonlyMap<string, keyof LoraConfigInput> = new Map<string, keyof LoraConfigInput>([
  ['r', 'r'], ['lora_alpha', 'loraAlpha'], ['lora_dropout', 'loraDropout'], ['target_modules', 'targetModules'],
  ['bias', 'bias'], ['modules_to_save', 'modulesToSave'], ['init_lora_weights', 'initLoraWeights'], ['use_rslora', 'useRslora'],
  ['rank_pattern', 'rankPattern'], ['alpha_pattern', 'alphaPattern'], ['base_model_name_or_path', 'baseModelNameOrPath'],
  ['inference_mode', 'inferenceMode'], ['task_type', 'taskType'], ['fan_in_fan_out', 'fanInFanOut'],
]);
const SNAKE_OF = new Map([...PEFT_KEYS].map(([snake, camel]) => [camel, snake]));

/**
 * Reads an `adapter_config.json` object into a LoraConfig; unknown keys are
 * ignored with one warning naming them, features this package lacks (DoRA,
 * layers_to_transform, ...) are errors; `fan_in_fan_out` (GPT-2's Conv1D) is read,
 * and the adapted layers' type decides it at injection, as in PEFT. Errors name the
 * source (`opts.source`, default 'adapter_config.json') and the JSON key.
 * @example const cfg = loraConfigFromPeftJson(JSON.parse(readFileSync('adapter_config.json', 'utf8')));
 */
export function loraConfigFromPeftJson(json: unknown, opts: ReadOptions & { source?: string } = {}): LoraConfig {
  const warn = opts.onWarning ?? ((m: string) => console.warn(m));
  const src = opts.source ?? 'adapter_config.json';
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${src}: expected a JSON object, got ${json === null ? 'null' : Array.isArray(json) ? 'an array' : typeof json}`);
  // Own keys only, into a null-prototype map: '__proto__' or 'toString' are keys like any other.
  const j = Object.create(null) as Record<string, unknown>;
  for (const k of Object.keys(json)) j[k] = (json as Record<string, unknown>)[k];
  const str = (v: unknown): string => JSON.stringify(v)?.slice(0, 120) ?? String(v);
  if (j.peft_type !== undefined && j.peft_type !== 'LORA') throw new Error(`${src}: peft_type must be 'LORA', got ${str(j.peft_type)}`);
  if (j.use_dora === true) throw new Error(`${src}: use_dora true (DoRA) is not supported`);
  for (const k of ['layers_to_transform', 'layers_pattern', 'layer_replication', 'exclude_modules', 'trainable_token_indices', 'target_parameters'] as const) {
    const v = j[k];
    if (v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0)) {
      throw new Error(`${src}: ${k} ${str(v)} is not supported`);
    }
  }
  if (j.lora_bias === true) throw new Error(`${src}: lora_bias true is not supported`);
  const input: Record<string, unknown> = {};
  const unknown: string[] = [];
  for (const k of Object.keys(j)) {
    const field = PEFT_KEYS.get(k);
    const v = j[k];
    if (field === undefined) {
      if (!INERT_KEYS.has(k)) unknown.push(k);
      continue;
    }
    // PEFT writes null for "not set" in these; the LoraConfig default applies.
    if (v === null && (field === 'targetModules' || field === 'rankPattern' || field === 'alphaPattern' || field === 'taskType')) continue;
    input[field] = v;
  }
  if (unknown.length) warn(`${src}: ignoring unknown key(s) ${unknown.map((k) => `'${k}'`).join(', ')}`);
  return new LoraConfig(input as LoraConfigInput, { source: src, fieldName: (f) => SNAKE_OF.get(f) ?? f });
}

function rawOf(t: Tensor): RawTensor {
  return { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.dataSync()) };
}

/**
 * The adapter's tensors under PEFT's saved keys (`base_model.model.<path>.lora_A.weight`,
 * adapter name stripped), plus trained biases (per `bias`) and modules_to_save copies.
 * @example const sd = getPeftModelStateDict(peft.baseModel, 'default');
 */
export function getPeftModelStateDict(tuner: LoraModel, adapterName: string): Record<string, Tensor> {
  const cfg = tuner.peftConfig[adapterName];
  if (!cfg) throw new Error(`getPeftModelStateDict: no adapter named '${adapterName}'`);
  const out: Record<string, Tensor> = {};
  for (const [path, layer] of tuner.loraLayers()) {
    if (!layer.loraA.has(adapterName)) continue;
    out[`${PEFT_PREFIX}${path}.lora_A.weight`] = layer.loraA.get(adapterName).weight;
    out[`${PEFT_PREFIX}${path}.lora_B.weight`] = layer.loraB.get(adapterName).weight;
  }
  if (cfg.bias === 'all') {
    for (const [n, p] of tuner.model.namedParameters()) {
      if (n.endsWith('bias') && !n.includes('.original_module.') && !n.includes('.modules_to_save.')) out[`${PEFT_PREFIX}${n}`] = p;
    }
  } else if (cfg.bias === 'lora_only') {
    for (const [path, layer] of tuner.loraLayers()) {
      if (layer.loraA.has(adapterName) && layer.baseLayer.bias) out[`${PEFT_PREFIX}${path}.base_layer.bias`] = layer.baseLayer.bias;
    }
  }
  for (const [path, w] of tuner.saveWrappers()) {
    if (!w.modulesToSave.has(adapterName)) continue;
    for (const [n, p] of w.modulesToSave.get(adapterName).namedParameters()) out[`${PEFT_PREFIX}${path}.${n}`] = p;
  }
  return out;
}

const TRANSFORMERS_DECODER = 'model.';

/**
 * Renames saved keys to the module paths of Hugging Face transformers'
 * LlamaForCausalLM, which nests the decoder under `model.` and keeps `lm_head`
 * at the root: `base_model.model.layers.0...` becomes
 * `base_model.model.model.layers.0...`, so PEFT loads the adapter onto that
 * model. Loading accepts either layout. Only the llama flavour maps this way
 * (GPT-2's checkpoints fuse q, k, v into one `c_attn`).
 * @example const hf = toTransformersLayout(adapterTensors(peft.baseModel, 'default'));
 */
export function toTransformersLayout<T>(tensors: Record<string, T>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const [key, t] of Object.entries(tensors)) {
    const path = key.startsWith(PEFT_PREFIX) ? key.slice(PEFT_PREFIX.length) : key;
    out[path.startsWith('lm_head') ? `${PEFT_PREFIX}${path}` : `${PEFT_PREFIX}${TRANSFORMERS_DECODER}${path}`] = t;
  }
  return out;
}

/**
 * {@link getPeftModelStateDict} as host tensors (what the files hold).
 * @example encodeSafetensors(adapterTensors(peft.baseModel, 'default'), { format: 'pt' })
 */
export function adapterTensors(tuner: LoraModel, adapterName: string): Record<string, RawTensor> {
  const out: Record<string, RawTensor> = {};
  for (const [k, t] of Object.entries(getPeftModelStateDict(tuner, adapterName))) out[k] = rawOf(t);
  return out;
}

/** A value to load: a host tensor, a fixture `{shape, data}` record, or a Tensor. */
export type AdapterValue = RawTensor | { shape: readonly number[]; data: ArrayLike<number> } | Tensor;

/**
 * Loads adapter tensors into an existing adapter (PEFT's set_peft_model_state_dict).
 * Keys may carry the `base_model.model.` prefix or not, and name no adapter
 * (`layers.0.self_attn.q_proj.lora_A.weight`). Every key and shape is checked,
 * and every lora_A/lora_B of the adapter must be present, before anything is
 * written: a key that maps onto nothing is an error naming it.
 * @example setPeftModelStateDict(peft.baseModel, fixture.loraStateDict, 'default')
 */
export function setPeftModelStateDict(tuner: LoraModel, sd: Record<string, AdapterValue> | Map<string, AdapterValue>, adapterName: string): void {
  if (!tuner.peftConfig[adapterName]) throw new Error(`setPeftModelStateDict: no adapter named '${adapterName}'`);
  const targets = new Map<string, Tensor>();
  for (const [path, layer] of tuner.loraLayers()) {
    if (!layer.loraA.has(adapterName)) continue;
    targets.set(`${path}.lora_A.weight`, layer.loraA.get(adapterName).weight);
    targets.set(`${path}.lora_B.weight`, layer.loraB.get(adapterName).weight);
  }
  const required = new Set(targets.keys());
  const params = new Map(tuner.model.namedParameters());
  const wrappers = tuner.saveWrappers();
  const resolve = (key: string): Tensor | undefined => {
    const hit = targets.get(key);
    if (hit) return hit;
    for (const [path, w] of wrappers) {
      if (key.startsWith(`${path}.`) && w.modulesToSave.has(adapterName)) {
        return params.get(`${path}.modules_to_save.${adapterName}.${key.slice(path.length + 1)}`);
      }
    }
    if (key.endsWith('bias')) return params.get(key);
    return undefined;
  };
  const entries = sd instanceof Map ? [...sd] : Object.entries(sd);
  const writes: [Tensor, AdapterValue, string][] = [];
  const problems: string[] = [];
  for (const [rawKey, v] of entries) {
    let key = rawKey.startsWith(PEFT_PREFIX) ? rawKey.slice(PEFT_PREFIX.length) : rawKey;
    let p = resolve(key);
    // transformers' LlamaForCausalLM keeps the decoder under `model.` (see toTransformersLayout).
    if (!p && key.startsWith(TRANSFORMERS_DECODER)) {
      const inner = key.slice(TRANSFORMERS_DECODER.length);
      p = resolve(inner);
      if (p) key = inner;
    }
    if (!p) {
      problems.push(`tensor '${rawKey}' does not map onto any adapter parameter of the model`);
      continue;
    }
    required.delete(key);
    const shape = [...v.shape];
    if (shape.length !== p.rank || shape.some((d, i) => d !== p.shape[i])) {
      problems.push(`tensor '${rawKey}' has shape [${shape.join(', ')}], the model expects [${p.shape.join(', ')}]`);
      continue;
    }
    const n = shape.reduce((a, b) => a * b, 1);
    const len = isTensor(v) ? v.size : v.data.length;
    if (len !== n) problems.push(`tensor '${rawKey}' holds ${len} values, shape needs ${n}`);
    else writes.push([p, v, rawKey]);
  }
  for (const k of required) problems.push(`missing tensor '${k}' for adapter '${adapterName}'`);
  if (problems.length) throw new Error(`loading adapter '${adapterName}':\n  ${problems.join('\n  ')}`);
  noGrad(() => {
    for (const [p, v] of writes) {
      const src = isTensor(v)
        ? (v.backend === p.backend ? v.clone() : v.to(p.backend.name))
        : tensor(Float32Array.from(v.data), { shape: [...p.shape], backend: p.backend.name });
      p.assign(src);
      src.dispose();
    }
  });
}

function isTensor(v: AdapterValue): v is Tensor {
  return typeof (v as Tensor).dataSync === 'function';
}

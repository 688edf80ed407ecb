import { compileNamePattern, type NamePattern } from './pattern.ts';

/** Which modules get a LoRA adapter (PEFT's `target_modules`). */
export type TargetModules = readonly string[] | string | RegExp;

export type LoraBias = 'none' | 'all' | 'lora_only';

export type InitLoraWeights = boolean | 'gaussian';

/** The fields a user may set; everything has PEFT's default. */
export interface LoraConfigInput {
  /** Rank of the update (default 8). */
  r?: number;
  /** Scaling numerator: scaling = loraAlpha / r, or loraAlpha / sqrt(r) with rsLoRA (default 8). */
  loraAlpha?: number;
  /** Dropout on the adapter's input (default 0). */
  loraDropout?: number;
  /**
   * A list: a module matches when its dotted name equals an entry or ends with `.entry`.
   * A string or RegExp: the whole dotted name must match. `'all-linear'`: every Linear but the output head.
   * Default `['q_proj', 'v_proj']` (PEFT's mapping for LLaMA-style models).
   */
  targetModules?: TargetModules;
  /** Which biases train: `none` (default), `all` biases of the model, or `lora_only` (those of adapted layers). */
  bias?: LoraBias;
  /** Extra modules trained in full and saved with the adapter (names or dotted suffixes). */
  modulesToSave?: readonly string[] | null;
  /** `true`: A kaiming-uniform (a = sqrt 5), B zero; `'gaussian'`: A ~ N(0, 1/r), B zero; `false`: both random. */
  initLoraWeights?: InitLoraWeights;
  /** Rank-stabilised scaling loraAlpha / sqrt(r) (default false). */
  useRslora?: boolean;
  /** Per-module rank overrides, keys matched as PEFT's `get_pattern_key` does. */
  rankPattern?: Readonly<Record<string, number>>;
  /** Per-module alpha overrides, keys matched like `rankPattern`. */
  alphaPattern?: Readonly<Record<string, number>>;
  /** Recorded in `adapter_config.json`. */
  baseModelNameOrPath?: string | null;
  /** Adapter weights frozen (as after `fromPretrained`); default false. */
  inferenceMode?: boolean;
  /** Recorded in `adapter_config.json` (default `CAUSAL_LM`). */
  taskType?: string;
  /**
   * PEFT's `fan_in_fan_out`: the adapted weights are stored `[in, out]`
   * (transformers' Conv1D, GPT-2). Set from the layers when the adapter is
   * injected, as PEFT does (default false).
   */
  fanInFanOut?: boolean;
}

const BIASES: readonly LoraBias[] = ['none', 'all', 'lora_only'];

/** PEFT's TaskType values. */
export const TASK_TYPES: readonly string[] = ['CAUSAL_LM', 'SEQ_CLS', 'SEQ_2_SEQ_LM', 'TOKEN_CLS', 'QUESTION_ANS', 'FEATURE_EXTRACTION'];

/** Every option LoraConfig accepts (LoraConfigInput's keys). */
export const LORA_CONFIG_FIELDS: readonly (keyof LoraConfigInput)[] = [
  'r', 'loraAlpha', 'loraDropout', 'targetModules', 'bias', 'modulesToSave', 'initLoraWeights', 'useRslora',
  'rankPattern', 'alphaPattern', 'baseModelNameOrPath', 'inferenceMode', 'taskType', 'fanInFanOut',
];

/** How a parse names its source and fields in errors (adapter_config.json uses snake_case keys). */
export interface ConfigErrorContext {
  /** Prefix of every message, e.g. the file path; default 'LoraConfig'. */
  source?: string;
  /** The name a field has in the source; default the camelCase field itself. */
  fieldName?: (field: keyof LoraConfigInput) => string;
}

/** A null-prototype copy of a pattern map, so keys like `__proto__` or `toString` are plain keys. */
function patternMap(v: unknown, field: string, bad: (f: string, want: string, got: unknown) => never): Record<string, number> {
  const out = Object.create(null) as Record<string, number>;
  if (v === undefined || v === null) return out;
  if (typeof v !== 'object' || Array.isArray(v)) bad(field, 'an object of pattern -> number', v);
  for (const k of Object.keys(v as object)) out[k] = (v as Record<string, number>)[k];
  return out;
}

function camelSuggestion(key: string): string {
  const camel = key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  const hit = LORA_CONFIG_FIELDS.find((f) => f === camel || f.toLowerCase() === key.replace(/_/g, '').toLowerCase());
  return hit ? ` (did you mean '${hit}'?)` : '';
}

/**
 * A validated LoRA configuration with PEFT's field semantics and defaults.
 * Errors name the field and the bad value; an unknown option is an error
 * (PEFT's snake_case names suggest their camelCase spelling here).
 *
 * @example const cfg = new LoraConfig({ r: 8, loraAlpha: 16, targetModules: ['q_proj', 'v_proj'] });
 */
export class LoraConfig {
  readonly r: number;
  readonly loraAlpha: number;
  readonly loraDropout: number;
  readonly targetModules: TargetModules;
  readonly bias: LoraBias;
  readonly modulesToSave: readonly string[] | null;
  readonly initLoraWeights: InitLoraWeights;
  readonly useRslora: boolean;
  readonly rankPattern: Readonly<Record<string, number>>;
  readonly alphaPattern: Readonly<Record<string, number>>;
  readonly baseModelNameOrPath: string | null;
  readonly inferenceMode: boolean;
  readonly taskType: string;
  readonly fanInFanOut: boolean;

  constructor(input: LoraConfigInput = {}, ctx: ConfigErrorContext = {}) {
    const source = ctx.source ?? 'LoraConfig';
    const fields = LORA_CONFIG_FIELDS as readonly string[];
    const rename = ctx.fieldName;
    const name = (f: string): string =>
      rename ? f.replace(/^[A-Za-z]+/, (head) => (fields.includes(head) ? rename(head as keyof LoraConfigInput) : head)) : f;
    const bad = (field: string, want: string, got: unknown): never => {
      throw new Error(`${source}: ${name(field)} must be ${want}, got ${show(got)}`);
    };
    if (typeof input !== 'object' || input === null || Array.isArray(input)) bad('the config', 'an object of options', input);
    const unknown = Object.keys(input).filter((k) => !fields.includes(k));
    if (unknown.length) {
      throw new Error(`${source}: unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'${camelSuggestion(k)}`).join(', ')}; ` +
        `options are ${LORA_CONFIG_FIELDS.join(', ')}`);
    }
    const r = input.r ?? 8;
    if (!(Number.isInteger(r) && r >= 1)) bad('r', 'a positive integer', r);
    const loraAlpha = input.loraAlpha ?? 8;
    if (typeof loraAlpha !== 'number' || !Number.isFinite(loraAlpha)) bad('loraAlpha', 'a finite number', loraAlpha);
    const loraDropout = input.loraDropout ?? 0;
    if (!(typeof loraDropout === 'number' && loraDropout >= 0 && loraDropout < 1)) bad('loraDropout', 'in [0, 1)', loraDropout);
    const targetModules = input.targetModules ?? ['q_proj', 'v_proj'];
    if (targetModules instanceof RegExp) {
      // a RegExp comes from the caller's own code, not from a file: matched as given
    } else if (typeof targetModules === 'string') {
      if (targetModules === '') bad('targetModules', 'a non-empty string, list or RegExp', targetModules);
      if (targetModules !== 'all-linear') compilePattern(targetModules, name('targetModules'), source);
    } else if (Array.isArray(targetModules)) {
      if (targetModules.length === 0) bad('targetModules', 'a non-empty list', targetModules);
      for (const t of targetModules) {
        if (typeof t !== 'string' || t === '') bad('targetModules', 'a list of non-empty strings', t);
      }
    } else {
      bad('targetModules', "a list of names, a string/RegExp or 'all-linear'", targetModules);
    }
    const bias = input.bias ?? 'none';
    if (!BIASES.includes(bias)) bad('bias', `one of ${BIASES.map((b) => `'${b}'`).join(', ')}`, bias);
    const modulesToSave = input.modulesToSave ?? null;
    if (modulesToSave !== null) {
      if (!Array.isArray(modulesToSave)) bad('modulesToSave', 'a list of module names or null', modulesToSave);
      for (const m of modulesToSave) if (typeof m !== 'string' || m === '') bad('modulesToSave', 'a list of non-empty strings', m);
    }
    const initLoraWeights = input.initLoraWeights ?? true;
    if (initLoraWeights !== true && initLoraWeights !== false && initLoraWeights !== 'gaussian') {
      bad('initLoraWeights', "true, false or 'gaussian'", initLoraWeights);
    }
    const useRslora = input.useRslora ?? false;
    if (typeof useRslora !== 'boolean') bad('useRslora', 'a boolean', useRslora);
    const rankPattern = patternMap(input.rankPattern, 'rankPattern', bad);
    for (const k of Object.keys(rankPattern)) {
      compilePattern(k, `${name('rankPattern')} key`, source);
      const v = rankPattern[k];
      if (!(Number.isInteger(v) && v >= 1)) bad(`rankPattern['${k}']`, 'a positive integer', v);
    }
    const alphaPattern = patternMap(input.alphaPattern, 'alphaPattern', bad);
    for (const k of Object.keys(alphaPattern)) {
      compilePattern(k, `${name('alphaPattern')} key`, source);
      const v = alphaPattern[k];
      if (typeof v !== 'number' || !Number.isFinite(v)) bad(`alphaPattern['${k}']`, 'a finite number', v);
    }
    const baseModelNameOrPath = input.baseModelNameOrPath ?? null;
    if (baseModelNameOrPath !== null && typeof baseModelNameOrPath !== 'string') bad('baseModelNameOrPath', 'a string or null', baseModelNameOrPath);
    const inferenceMode = input.inferenceMode ?? false;
    if (typeof inferenceMode !== 'boolean') bad('inferenceMode', 'a boolean', inferenceMode);
    const taskType = input.taskType ?? 'CAUSAL_LM';
    if (!TASK_TYPES.includes(taskType)) bad('taskType', `one of PEFT's task types ${TASK_TYPES.join(', ')}`, taskType);
    this.r = r;
    this.loraAlpha = loraAlpha;
    this.loraDropout = loraDropout;
    this.targetModules = Array.isArray(targetModules) ? Object.freeze([...targetModules]) : targetModules;
    this.bias = bias;
    this.modulesToSave = modulesToSave ? Object.freeze([...modulesToSave]) : null;
    this.initLoraWeights = initLoraWeights;
    this.useRslora = useRslora;
    this.rankPattern = Object.freeze(rankPattern);
    this.alphaPattern = Object.freeze(alphaPattern);
    this.baseModelNameOrPath = baseModelNameOrPath;
    this.inferenceMode = inferenceMode;
    this.taskType = taskType;
    const fanInFanOut = input.fanInFanOut ?? false;
    if (typeof fanInFanOut !== 'boolean') bad('fanInFanOut', 'a boolean', fanInFanOut);
    this.fanInFanOut = fanInFanOut;
  }

  /**
   * A copy with some fields replaced (like `dataclasses.replace`).
   * @example const frozen = cfg.with({ inferenceMode: true });
   */
  with(changes: LoraConfigInput): LoraConfig {
    return new LoraConfig({ ...this.toInput(), ...changes });
  }

  /** The fields as a plain input object. @example new LoraConfig(cfg.toInput()) */
  toInput(): LoraConfigInput {
    return {
      r: this.r, loraAlpha: this.loraAlpha, loraDropout: this.loraDropout, targetModules: this.targetModules,
      bias: this.bias, modulesToSave: this.modulesToSave, initLoraWeights: this.initLoraWeights,
      useRslora: this.useRslora, rankPattern: this.rankPattern, alphaPattern: this.alphaPattern,
      baseModelNameOrPath: this.baseModelNameOrPath, inferenceMode: this.inferenceMode, taskType: this.taskType,
      fanInFanOut: this.fanInFanOut,
    };
  }

  /**
   * Rank, alpha and scaling for the module at a dotted path, after `rankPattern` / `alphaPattern`.
   * @example cfg.layerSettings('layers.0.self_attn.q_proj') // { r: 8, alpha: 8, scaling: 1 }
   */
  layerSettings(moduleName: string): { r: number; alpha: number; scaling: number } {
    const rKey = getPatternKey(Object.keys(this.rankPattern), moduleName);
    const aKey = getPatternKey(Object.keys(this.alphaPattern), moduleName);
    const r = rKey !== null ? this.rankPattern[rKey] : this.r;
    const alpha = aKey !== null ? this.alphaPattern[aKey] : this.loraAlpha;
    return { r, alpha, scaling: loraScaling(alpha, r, this.useRslora) };
  }
}

/**
 * alpha / r, or alpha / sqrt(r) for rank-stabilised LoRA.
 * @example loraScaling(16, 4, true) // 8
 */
export function loraScaling(alpha: number, r: number, useRslora: boolean): number {
  return useRslora ? alpha / Math.sqrt(r) : alpha / r;
}

/**
 * PEFT's `get_pattern_key`: the first pattern key `k` (a regex fragment) such that the
 * whole module name matches `(.*\.)?(k)`, or null.
 * @example getPatternKey(['q_proj'], 'layers.0.self_attn.q_proj') // 'q_proj'
 */
export function getPatternKey(patternKeys: readonly string[], moduleName: string): string | null {
  for (const key of patternKeys) {
    if (compilePattern(`(.*\\.)?(${key})`, 'pattern').test(moduleName)) return key;
  }
  return null;
}

/**
 * Whether a dotted module name is targeted (`'all-linear'` is resolved by the caller).
 * @example matchesTarget('layers.0.self_attn.q_proj', ['q_proj']) // true
 */
export function matchesTarget(name: string, targets: TargetModules): boolean {
  if (targets instanceof RegExp) return fullMatch(targets).test(name);
  if (typeof targets === 'string') return compilePattern(targets, 'targetModules').test(name);
  return targets.some((t) => name === t || name.endsWith(`.${t}`));
}

function fullMatch(re: RegExp): RegExp {
  return new RegExp(`^(?:${re.source})$`, re.flags.replace(/[gy]/g, ''));
}

// NOTE: string patterns may come from untrusted adapter_config.json files: matched in linear time (pattern.ts), never by RegExp.
function compilePattern(source: string, field: string, prefix = 'LoraConfig'): NamePattern {
  return compileNamePattern(source, field, prefix);
}

function show(v: unknown): string {
  if (v instanceof RegExp) return String(v);
  if (typeof v === 'string') return `'${v.length > 80 ? `${v.slice(0, 80)}...` : v}'`;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'undefined' || typeof v === 'symbol' || typeof v === 'function') return String(v);
  try {
    const json = JSON.stringify(v) ?? String(v);
    return json.length > 120 ? `${json.slice(0, 120)}...` : json;
  } catch {
    return Object.prototype.toString.call(v);
  }
}

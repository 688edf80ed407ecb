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
}

const BIASES: readonly LoraBias[] = ['none', 'all', 'lora_only'];

/**
 * A validated LoRA configuration with PEFT's field semantics and defaults.
 * Errors name the field and the bad value.
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

  constructor(input: LoraConfigInput = {}) {
    const bad = (field: string, want: string, got: unknown): never => {
      throw new Error(`LoraConfig: ${field} must be ${want}, got ${show(got)}`);
    };
    const r = input.r ?? 8;
    if (!(Number.isInteger(r) && r >= 1)) bad('r', 'a positive integer', r);
    const loraAlpha = input.loraAlpha ?? 8;
    if (typeof loraAlpha !== 'number' || !Number.isFinite(loraAlpha)) bad('loraAlpha', 'a finite number', loraAlpha);
    const loraDropout = input.loraDropout ?? 0;
    if (!(typeof loraDropout === 'number' && loraDropout >= 0 && loraDropout < 1)) bad('loraDropout', 'in [0, 1)', loraDropout);
    const targetModules = input.targetModules ?? ['q_proj', 'v_proj'];
    if (targetModules instanceof RegExp) {
      // any RegExp is fine
    } else if (typeof targetModules === 'string') {
      if (targetModules === '') bad('targetModules', 'a non-empty string, list or RegExp', targetModules);
      if (targetModules !== 'all-linear') compilePattern(targetModules, 'targetModules');
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
    const rankPattern = { ...(input.rankPattern ?? {}) };
    for (const [k, v] of Object.entries(rankPattern)) {
      compilePattern(k, `rankPattern key`);
      if (!(Number.isInteger(v) && v >= 1)) bad(`rankPattern['${k}']`, 'a positive integer', v);
    }
    const alphaPattern = { ...(input.alphaPattern ?? {}) };
    for (const [k, v] of Object.entries(alphaPattern)) {
      compilePattern(k, `alphaPattern key`);
      if (typeof v !== 'number' || !Number.isFinite(v)) bad(`alphaPattern['${k}']`, 'a finite number', v);
    }
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
    this.baseModelNameOrPath = input.baseModelNameOrPath ?? null;
    this.inferenceMode = input.inferenceMode ?? false;
    this.taskType = input.taskType ?? 'CAUSAL_LM';
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

const patternCache = new Map<string, RegExp>();

function compilePattern(source: string, field: string): RegExp {
  let re = patternCache.get(source);
  if (re) return re;
  try {
    re = new RegExp(`^(?:${source})$`);
  } catch (err) {
    throw new Error(`LoraConfig: ${field} ${show(source)} is not a valid regular expression (${(err as Error).message})`);
  }
  patternCache.set(source, re);
  return re;
}

function show(v: unknown): string {
  if (v instanceof RegExp) return String(v);
  if (typeof v === 'string') return `'${v}'`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

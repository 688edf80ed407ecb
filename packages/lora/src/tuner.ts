import { add, concat, mul, noGrad, tidy, type Tensor } from '@lowrank/core';
import { Conv1D, Linear, Module } from '@lowrank/nn';
import { LoraConfig, getPatternKey, matchesTarget, type LoraConfigInput } from './config.ts';
import { LoraLinear, ModulesToSaveWrapper, canCopyModule } from './layer.ts';

/** A module that LoRA would wrap, with the settings it would get. */
export interface TargetPlan {
  name: string;
  /** The Linear / Conv1D itself (or the LoraLinear already wrapping it). */
  module: Linear | Conv1D | LoraLinear;
  inFeatures: number;
  outFeatures: number;
  r: number;
  alpha: number;
  scaling: number;
}

/** How `addWeightedAdapter` combines adapters. */
export type CombinationType = 'linear' | 'cat';

/**
 * Every module LoRA may look at: LoRA layers count as one module (their
 * `base_layer` / `lora_A` internals are skipped), and so do modules_to_save wrappers.
 * @example candidateModules(model).map(([name]) => name)
 */
export function candidateModules(model: Module): [string, Module][] {
  const out: [string, Module][] = [];
  const walk = (m: Module, prefix: string): void => {
    out.push([prefix, m]);
    if (m instanceof LoraLinear || m instanceof ModulesToSaveWrapper) return;
    for (const [name, child] of m.namedChildren()) walk(child, prefix ? `${prefix}.${name}` : name);
  };
  walk(model, '');
  return out;
}

function isLinearLike(m: Module): m is Linear | Conv1D | LoraLinear {
  return m instanceof Linear || m instanceof Conv1D || m instanceof LoraLinear;
}

/**
 * The layers a config targets in a model, checked but not modified: throws
 * when nothing matches (listing available names) or a match is not a Linear.
 * @example planTargets(model, new LoraConfig({ targetModules: ['q_proj'] })).length
 */
export function planTargets(model: Module, config: LoraConfig): TargetPlan[] {
  const candidates = candidateModules(model).filter(([name]) => name !== '');
  let matched: [string, Module][];
  if (config.targetModules === 'all-linear') {
    // NOTE: PEFT's 'all-linear' skips the output head (the model's output embeddings), here `lm_head`.
    matched = candidates.filter(([name, m]) => isLinearLike(m) && name !== 'lm_head');
  } else {
    matched = candidates.filter(([name]) => matchesTarget(name, config.targetModules));
  }
  if (matched.length === 0) {
    const linears = candidates.filter(([, m]) => isLinearLike(m)).map(([n]) => n);
    const leaves = [...new Set(linears.map((n) => n.slice(n.lastIndexOf('.') + 1)))];
    throw new Error(
      `getPeftModel: no module matched targetModules ${describeTargets(config)}; ` +
      `Linear modules in the model include ${leaves.slice(0, 8).map((n) => `'${n}'`).join(', ') || '(none)'}` +
      (linears.length ? ` (e.g. '${linears[0]}')` : ''),
    );
  }
  const bad = matched.filter(([, m]) => !isLinearLike(m));
  if (bad.length) {
    const [name, m] = bad[0];
    throw new Error(`getPeftModel: target module '${name}' is a ${m.constructor.name}, not a Linear; LoRA supports Linear (and Conv1D) layers only`);
  }
  return matched.map(([name, m]) => {
    const lin = m as Linear | Conv1D | LoraLinear;
    const s = config.layerSettings(name);
    const values = s.r * Math.max(lin.inFeatures, lin.outFeatures);
    if (values > MAX_ADAPTER_VALUES) {
      const key = getPatternKey(Object.keys(config.rankPattern), name);
      throw new Error(
        `getPeftModel: ${key === null ? 'r' : `rankPattern['${key}']`} = ${s.r} for '${name}' ` +
        `would give a ${s.r} x ${Math.max(lin.inFeatures, lin.outFeatures)} adapter matrix (${values.toExponential(2)} values, limit ${MAX_ADAPTER_VALUES.toExponential(2)})`,
      );
    }
    return { name, module: lin, inFeatures: lin.inFeatures, outFeatures: lin.outFeatures, r: s.r, alpha: s.alpha, scaling: s.scaling };
  });
}

/** Largest lora_A / lora_B (2^28 values, 1 GiB of float32): a rank beyond it is a typo or a hostile file, not a model. */
export const MAX_ADAPTER_VALUES = 2 ** 28;

function describeTargets(config: LoraConfig): string {
  const t = config.targetModules;
  if (t instanceof RegExp) return String(t);
  if (typeof t === 'string') return `'${t}'`;
  return `[${t.map((x) => `'${x}'`).join(', ')}]`;
}

function modulesToSavePlan(model: Module, config: LoraConfig): [string, Module][] {
  const names = config.modulesToSave;
  if (!names || names.length === 0) return [];
  const hits = candidateModules(model).filter(([n]) => n !== '' && names.some((k) => n === k || n.endsWith(`.${k}`)));
  const missing = names.filter((k) => !hits.some(([n]) => n === k || n.endsWith(`.${k}`)));
  if (missing.length) throw new Error(`getPeftModel: modulesToSave ${missing.map((k) => `'${k}'`).join(', ')} matched no module`);
  const uncopyable = hits.find(([, m]) => !(m instanceof ModulesToSaveWrapper) && !canCopyModule(m));
  if (uncopyable) {
    throw new Error(`getPeftModel: modulesToSave '${uncopyable[0]}' is a ${uncopyable[1].constructor.name}; supported: Linear, Embedding, LayerNorm, RMSNorm (modules with weights)`);
  }
  return hits;
}

/** The first LoRA layer or modules_to_save wrapper inside a model, or null. */
function firstLoraModule(model: Module): string | null {
  const hit = model.namedModules().find(([, m]) => m instanceof LoraLinear || m instanceof ModulesToSaveWrapper);
  return hit ? hit[0] : null;
}

/**
 * The LoRA tuner (PEFT's LoraModel): injects LoraLinear layers into `model`
 * in place, and owns the adapter bookkeeping (which is active, trainable,
 * merged). Registered under `model`, so state-dict keys read
 * `model.layers.0.self_attn.q_proj.lora_A.default.weight`.
 * @example const tuner = new LoraModel(model, new LoraConfig({ r: 4 }), 'default');
 */
export class LoraModel<M extends Module = Module> extends Module {
  model: M;
  readonly peftConfig: Record<string, LoraConfig> = Object.create(null) as Record<string, LoraConfig>; // adapter names are keys, even "__proto__"
  activeAdapters: string[];
  private readonly originalRequiresGrad = new Map<Tensor, boolean>();

  /**
   * `fill` runs once the adapter is injected (loading its tensors, say); if it
   * throws, the model is left exactly as it was and the error propagates.
   */
  constructor(model: M, config: LoraConfig | LoraConfigInput, adapterName = 'default', fill: (tuner: LoraModel<M>) => void = () => undefined) {
    super();
    const cfg = config instanceof LoraConfig ? config : new LoraConfig(config);
    const held = firstLoraModule(model);
    if (held !== null) {
      throw new Error(`getPeftModel: the model already holds LoRA layers (at '${held}'); add adapters with addAdapter() on its PeftModel, or unload() it first`);
    }
    for (const p of model.parameters()) this.originalRequiresGrad.set(p, p.requiresGrad);
    this.model = this.register('model', model);
    this.activeAdapters = [adapterName];
    this.injectThen(adapterName, cfg, () => fill(this));
  }

  forward(...args: never[]): unknown {
    return this.model.forward(...args);
  }

  /** The adapter-carrying layers with their dotted paths. */
  loraLayers(): [string, LoraLinear][] {
    return this.model.namedModules().filter((e): e is [string, LoraLinear] => e[1] instanceof LoraLinear);
  }

  /** The modules_to_save wrappers with their dotted paths. */
  saveWrappers(): [string, ModulesToSaveWrapper][] {
    return this.model.namedModules().filter((e): e is [string, ModulesToSaveWrapper] => e[1] instanceof ModulesToSaveWrapper);
  }

  /**
   * Adds an adapter to every module its config targets. Everything is checked
   * before the first change; if a later step throws anyway, the model is put back.
   */
  inject(adapterName: string, config: LoraConfig): void {
    this.injectThen(adapterName, config, () => undefined);
  }

  /**
   * `inject`, then `fill` (e.g. loading the adapter's tensors); if either throws, every
   * change is undone: modules unwrapped, new tensors disposed, requiresGrad flags,
   * active adapters and `peftConfig` as before.
   */
  injectThen(adapterName: string, config: LoraConfig, fill: () => void): void {
    checkAdapterName(adapterName);
    if (this.peftConfig[adapterName]) throw new Error(`addAdapter: an adapter named '${adapterName}' already exists`);
    const plan = planTargets(this.model, config);
    // NOTE: as PEFT, the layer type decides fan_in_fan_out: true for Conv1D, false for Linear.
    const conv = plan.some((t) => t.module instanceof Conv1D || (t.module instanceof LoraLinear && t.module.fanInFanOut));
    if (conv !== config.fanInFanOut) config = config.with({ fanInFanOut: conv });
    const saves = modulesToSavePlan(this.model, config);
    const clash = saves.find(([n]) => plan.some((p) => p.name === n));
    if (clash) throw new Error(`getPeftModel: '${clash[0]}' is both a LoRA target and in modulesToSave`);
    const flags = new Map(this.model.parameters().map((p): [Tensor, boolean] => [p, p.requiresGrad]));
    const active = [...this.activeAdapters];
    const undo: (() => void)[] = [];
    try {
      for (const t of plan) {
        const settings = {
          r: t.r, loraAlpha: t.alpha, scaling: t.scaling, loraDropout: config.loraDropout, initLoraWeights: config.initLoraWeights,
        };
        if (t.module instanceof LoraLinear) {
          const layer = t.module;
          layer.updateLayer(adapterName, settings);
          undo.push(() => layer.deleteAdapter(adapterName));
        } else {
          const base = t.module;
          const layer = new LoraLinear(base, adapterName, settings);
          this.model.setSubmodule(t.name, layer);
          undo.push(() => {
            this.model.setSubmodule(t.name, base);
            layer.deleteAdapter(adapterName);
          });
        }
      }
      for (const [name, m] of saves) {
        if (m instanceof ModulesToSaveWrapper) {
          m.addCopy(adapterName);
          undo.push(() => m.deleteCopy(adapterName));
        } else {
          for (const p of m.parameters()) if (!this.originalRequiresGrad.has(p)) this.originalRequiresGrad.set(p, p.requiresGrad);
          const w = new ModulesToSaveWrapper(m, adapterName);
          this.model.setSubmodule(name, w);
          undo.push(() => {
            this.model.setSubmodule(name, m);
            w.deleteCopy(adapterName);
          });
        }
      }
      this.peftConfig[adapterName] = config;
      this.setAdapter(this.activeAdapters.filter((a) => this.peftConfig[a]));
      fill();
    } catch (err) {
      for (const u of undo.reverse()) u();
      delete this.peftConfig[adapterName];
      this.activeAdapters = active;
      for (const [, layer] of this.loraLayers()) layer.activeAdapters = active.filter((a) => layer.loraA.has(a));
      for (const [p, f] of flags) p.requiresGrad_(f);
      throw err;
    }
  }

  /**
   * Makes these adapters the active (and only trainable) ones.
   * @example tuner.setAdapter('other')
   */
  setAdapter(names: string | readonly string[]): void {
    const list = typeof names === 'string' ? [names] : [...names];
    for (const n of list) {
      if (!this.peftConfig[n]) throw new Error(`setAdapter: no adapter named '${n}' (have ${Object.keys(this.peftConfig).map((k) => `'${k}'`).join(', ')})`);
    }
    this.activeAdapters = list;
    for (const [, layer] of this.loraLayers()) layer.activeAdapters = list.filter((a) => layer.loraA.has(a));
    for (const [, w] of this.saveWrappers()) w.activeAdapter = list.find((a) => w.modulesToSave.has(a)) ?? null;
    this.markTrainable();
  }

  /**
   * Freezes everything, then unfreezes the active adapters' A and B (unless in
   * inference mode), the biases its `bias` setting names, and the active modules_to_save copies.
   */
  markTrainable(): void {
    for (const p of this.model.parameters()) p.requiresGrad_(false);
    const active = new Set(this.activeAdapters.filter((a) => !this.peftConfig[a].inferenceMode));
    for (const [, layer] of this.loraLayers()) {
      for (const a of layer.adapterNames()) {
        const on = active.has(a);
        layer.loraA.get(a).weight.requiresGrad_(on);
        layer.loraB.get(a).weight.requiresGrad_(on);
      }
    }
    for (const a of active) {
      const bias = this.peftConfig[a].bias;
      if (bias === 'all') {
        for (const [n, p] of this.model.namedParameters()) {
          if (n.endsWith('bias') && !n.includes('original_module.')) p.requiresGrad_(true);
        }
      } else if (bias === 'lora_only') {
        for (const [, layer] of this.loraLayers()) if (layer.loraA.has(a)) layer.baseLayer.bias?.requiresGrad_(true);
      }
    }
    for (const [, w] of this.saveWrappers()) {
      if (w.activeAdapter !== null && active.has(w.activeAdapter)) {
        for (const p of w.modulesToSave.get(w.activeAdapter).parameters()) p.requiresGrad_(true);
      }
    }
  }

  /** Removes an adapter everywhere; an active one hands over to the first remaining. */
  deleteAdapter(name: string): void {
    if (!this.peftConfig[name]) throw new Error(`deleteAdapter: no adapter named '${name}'`);
    const layers = this.loraLayers();
    const merged = layers.find(([, l]) => l.mergedAdapters.includes(name));
    if (merged) throw new Error(`deleteAdapter: adapter '${name}' is merged into '${merged[0]}'; unmerge() first`);
    for (const [, layer] of layers) layer.deleteAdapter(name);
    for (const [, w] of this.saveWrappers()) w.deleteCopy(name);
    delete this.peftConfig[name];
    let active = this.activeAdapters.filter((a) => a !== name);
    if (active.length === 0) {
      const first = Object.keys(this.peftConfig)[0];
      active = first === undefined ? [] : [first];
    }
    if (active.length) this.setAdapter(active);
    else this.activeAdapters = [];
  }

  /** Runs fn with every adapter off (merged ones are unmerged, as in PEFT), restoring after, even on throw. */
  withAdaptersDisabled<T>(fn: () => T): T {
    const layers = this.loraLayers();
    const wrappers = this.saveWrappers();
    const prev = layers.map(([, l]) => l.disableAdapters);
    const prevW = wrappers.map(([, w]) => w.disableAdapters);
    const restore = (): void => {
      layers.forEach(([, l], i) => (l.disableAdapters = prev[i]));
      wrappers.forEach(([, w], i) => (w.disableAdapters = prevW[i]));
    };
    for (const [, l] of layers) {
      if (l.merged) l.unmerge();
      l.disableAdapters = true;
    }
    for (const [, w] of wrappers) w.disableAdapters = true;
    let result: T;
    try {
      result = fn();
    } catch (err) {
      restore();
      throw err;
    }
    if (result instanceof Promise) return result.finally(restore) as T;
    restore();
    return result;
  }

  /** Merges adapters (default: the active ones) into the base weights. */
  merge(adapterNames: readonly string[] = this.activeAdapters, safeMerge = false): void {
    for (const n of adapterNames) if (!this.peftConfig[n]) throw new Error(`merge: no adapter named '${n}'`);
    for (const [, layer] of this.loraLayers()) layer.merge(adapterNames, safeMerge);
  }

  /** Unmerges every merged adapter, last merged first. */
  unmerge(): void {
    for (const [, layer] of this.loraLayers()) layer.unmerge();
  }

  /**
   * Puts the original modules back (merging the active adapters first when
   * `merge`), restores each base parameter's original requiresGrad, and returns the bare model.
   */
  unloadAndOptionallyMerge(merge: boolean, safeMerge = false): M {
    if (merge) this.merge(this.activeAdapters, safeMerge);
    for (const [name, layer] of this.loraLayers()) this.model.setSubmodule(name, layer.baseLayer);
    for (const [name, w] of this.saveWrappers()) {
      const keep = w.activeAdapter !== null && w.modulesToSave.has(w.activeAdapter) ? w.modulesToSave.get(w.activeAdapter) : w.originalModule;
      this.model.setSubmodule(name, keep);
    }
    for (const p of this.model.parameters()) p.requiresGrad_(this.originalRequiresGrad.get(p) ?? true);
    return this.model;
  }

  /**
   * Combines existing adapters into a new one (PEFT's add_weighted_adapter), for
   * layers where all of them live:
   * - `'cat'`: A = cat_i(w_i scaling_i A_i) and B = cat_i(B_i) along the rank axis, new r = sum r_i,
   *   alpha = r (scaling 1). The update B A = sum_i w_i scaling_i B_i A_i is exactly linear in the weights.
   * - `'linear'`: equal ranks required; A = sum_i sqrt(w_i scaling_i) A_i, B = sum_i sqrt(w_i scaling_i) B_i.
   *   B A then has cross terms, so it is NOT linear in the weights (and needs w_i scaling_i >= 0).
   */
  addWeightedAdapter(adapters: readonly string[], weights: readonly number[], adapterName: string, combinationType: CombinationType = 'cat'): void {
    if (adapters.length === 0) throw new Error('addWeightedAdapter: adapters must not be empty');
    if (adapters.length !== weights.length) {
      throw new Error(`addWeightedAdapter: ${adapters.length} adapters but ${weights.length} weights`);
    }
    for (const a of adapters) if (!this.peftConfig[a]) throw new Error(`addWeightedAdapter: no adapter named '${a}'`);
    if (combinationType !== 'cat' && combinationType !== 'linear') {
      throw new Error(`addWeightedAdapter: combinationType must be 'cat' or 'linear', got '${String(combinationType)}'`);
    }
    if (this.peftConfig[adapterName]) throw new Error(`addWeightedAdapter: an adapter named '${adapterName}' already exists`);
    checkAdapterName(adapterName);
    const layers = this.loraLayers().filter(([, l]) => adapters.some((a) => l.loraA.has(a)));
    const ranks = new Set<number>();
    for (const [, l] of layers) for (const a of adapters) if (l.loraA.has(a)) ranks.add(l.r[a]);
    if (combinationType === 'linear') {
      if (ranks.size > 1) throw new Error(`addWeightedAdapter: all adapters must have the same r for 'linear' (got ${[...ranks].join(', ')}); use 'cat'`);
      for (const [, l] of layers) {
        adapters.forEach((a, i) => {
          if (l.loraA.has(a) && weights[i] * l.scaling[a] < 0) {
            throw new Error(`addWeightedAdapter: 'linear' needs weight * scaling >= 0, got ${weights[i]} for '${a}'`);
          }
        });
      }
    }
    const first = this.peftConfig[adapters[0]];
    const targetNames = layers.map(([n]) => n);
    const rankPattern: Record<string, number> = {};
    const newRanks = new Map<string, number>();
    for (const [name, l] of layers) {
      const present = adapters.filter((a) => l.loraA.has(a));
      const r = combinationType === 'cat' ? present.reduce((s, a) => s + l.r[a], 0) : l.r[present[0]];
      newRanks.set(name, r);
    }
    const baseR = newRanks.get(targetNames[0])!;
    const alphaPattern: Record<string, number> = {};
    for (const [name, r] of newRanks) {
      if (r !== baseR) {
        rankPattern[escapeRegExp(name)] = r;
        alphaPattern[escapeRegExp(name)] = r;
      }
    }
    const cfg = first.with({
      r: baseR, loraAlpha: baseR, useRslora: false, targetModules: targetNames, rankPattern, alphaPattern,
      modulesToSave: null, initLoraWeights: true, loraDropout: first.loraDropout,
    });
    this.inject(adapterName, cfg);
    noGrad(() => {
      for (const [, l] of layers) {
        const ws: number[] = [];
        const as: Tensor[] = [];
        const bs: Tensor[] = [];
        adapters.forEach((a, i) => {
          if (!l.loraA.has(a)) return;
          ws.push(weights[i] * l.scaling[a]);
          as.push(l.loraA.get(a).weight);
          bs.push(l.loraB.get(a).weight);
        });
        const [newA, newB] = tidy(() => {
          if (combinationType === 'cat') {
            return [concat(as.map((t, i) => mul(t, ws[i])), 0), concat(bs, 1)]; // [sum r, in], [out, sum r]
          }
          const c = ws.map(Math.sqrt);
          const sumOf = (ts: Tensor[]): Tensor => ts.map((t, i) => mul(t, c[i])).reduce((s, t) => add(s, t));
          return [sumOf(as), sumOf(bs)];
        });
        l.loraA.get(adapterName).weight.assign(newA);
        l.loraB.get(adapterName).weight.assign(newB);
        newA.dispose();
        newB.dispose();
      }
    });
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function checkAdapterName(name: string): void {
  if (typeof name !== 'string' || name === '' || name.includes('.')) {
    throw new Error(`adapter name must be a non-empty string without dots, got ${JSON.stringify(name)}`);
  }
}

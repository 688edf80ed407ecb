import {
  add, cast, lowRankLinear, matmul, mul, noGrad, reshape, sub, tidy, type Tensor,
} from '@lowrank/core';
import {
  Conv1D, Dropout, Embedding, LayerNorm, Linear, Module, RMSNorm, constant_, kaimingUniform_, normal_,
} from '@lowrank/nn';

/** The layers LoRA adapts: a Linear (weight `[out, in]`) or transformers' Conv1D (weight `[in, out]`, GPT-2). */
export type LoraBaseLayer = Linear | Conv1D;
import type { InitLoraWeights } from './config.ts';

/**
 * Modules registered under string keys (PyTorch's ModuleDict); used for the
 * per-adapter `lora_A`, `lora_B`, `lora_dropout` and `modules_to_save` maps.
 * @example const d = new ModuleDict({ default: new Linear(4, 2) }); d.get('default')
 */
export class ModuleDict<M extends Module = Module> extends Module {
  constructor(entries: Record<string, M> | [string, M][] = {}) {
    super();
    for (const [k, m] of Array.isArray(entries) ? entries : Object.entries(entries)) this.register(k, m);
  }

  /** The module under a key. @example loraA.get('default') */
  get(key: string): M {
    return this.getSubmodule(key) as M;
  }

  /** Whether a key is present. @example loraA.has('default') */
  has(key: string): boolean {
    return this.namedChildren().some(([k]) => k === key);
  }

  /** Keys in registration order. @example loraA.keys() // ['default'] */
  keys(): string[] {
    return this.namedChildren().map(([k]) => k);
  }

  /** A new dict without `key` (a Module cannot drop a child; the owner registers the copy). */
  without(key: string): ModuleDict<M> {
    return new ModuleDict<M>(this.namedChildren().filter(([k]) => k !== key) as [string, M][]);
  }

  forward(): never {
    throw new Error('ModuleDict has no forward; look modules up with get()');
  }
}

/** What one adapter of a LoraLinear needs. */
export interface LoraLayerSettings {
  r: number;
  loraAlpha: number;
  scaling: number;
  loraDropout: number;
  initLoraWeights: InitLoraWeights;
}

/**
 * A Linear (or Conv1D) with LoRA adapters. It wraps the original layer (`base_layer`,
 * never modified except by `merge`) and adds, per adapter name, `lora_A`
 * (`[r, in]`) and `lora_B` (`[out, r]`):
 * y = base(x) + dropout(x) @ A^T @ B^T * scaling, as two small matmuls (B A is never formed in forward);
 * without dropout the first adapter is `lowRankLinear`'s epilogue of the base matmul.
 * For a Conv1D base (PEFT's `fan_in_fan_out`), merging adds (B A)^T * scaling to its `[in, out]` weight.
 *
 * @example const q = new LoraLinear(new Linear(16, 16), 'default', { r: 4, loraAlpha: 8, scaling: 2, loraDropout: 0, initLoraWeights: true });
 */
export class LoraLinear extends Module {
  baseLayer: LoraBaseLayer;
  loraDropout: ModuleDict<Dropout>;
  loraA: ModuleDict<Linear>;
  loraB: ModuleDict<Linear>;
  readonly r: Record<string, number> = Object.create(null) as Record<string, number>;
  readonly loraAlpha: Record<string, number> = Object.create(null) as Record<string, number>;
  readonly scaling: Record<string, number> = Object.create(null) as Record<string, number>;
  /** Adapters added to the output (unless merged or disabled). */
  activeAdapters: string[];
  /** When true the layer is exactly its base layer. */
  disableAdapters = false;
  /** Adapters folded into the base weight, in merge order (unmerge pops them). */
  readonly mergedAdapters: string[] = [];

  constructor(base: LoraBaseLayer, adapterName: string, settings: LoraLayerSettings) {
    super();
    if (!(base instanceof Linear || base instanceof Conv1D)) {
      throw new Error(`LoraLinear: the base layer must be a Linear or Conv1D, got ${(base as Module).constructor.name}`);
    }
    this.baseLayer = this.register('base_layer', base);
    this.training = base.training;
    this.loraDropout = this.register('lora_dropout', new ModuleDict<Dropout>());
    this.loraA = this.register('lora_A', new ModuleDict<Linear>());
    this.loraB = this.register('lora_B', new ModuleDict<Linear>());
    this.activeAdapters = [adapterName];
    this.updateLayer(adapterName, settings);
  }

  get inFeatures(): number {
    return this.baseLayer.inFeatures;
  }

  get outFeatures(): number {
    return this.baseLayer.outFeatures;
  }

  /** True for a Conv1D base, whose weight is stored `[in, out]` (PEFT's fan_in_fan_out). */
  get fanInFanOut(): boolean {
    return this.baseLayer instanceof Conv1D;
  }

  get merged(): boolean {
    return this.mergedAdapters.length > 0;
  }

  /** Adapter names present in this layer. */
  adapterNames(): string[] {
    return this.loraA.keys();
  }

  /**
   * Adds (or replaces) an adapter's A, B, dropout and scaling.
   * @example layer.updateLayer('other', { r: 2, loraAlpha: 4, scaling: 2, loraDropout: 0, initLoraWeights: true })
   */
  updateLayer(adapterName: string, s: LoraLayerSettings): void {
    if (!(Number.isInteger(s.r) && s.r >= 1)) throw new Error(`LoraLinear: r must be a positive integer, got ${s.r} for adapter '${adapterName}'`);
    const backend = this.baseLayer.weight.backend.name;
    const a = new Linear(this.inFeatures, s.r, { bias: false, backend }); // weight [r, in]
    const b = new Linear(s.r, this.outFeatures, { bias: false, backend }); // weight [out, r]
    if (s.initLoraWeights === true) {
      kaimingUniform_(a.weight, Math.sqrt(5));
      constant_(b.weight, 0);
    } else if (s.initLoraWeights === 'gaussian') {
      normal_(a.weight, 0, 1 / s.r);
      constant_(b.weight, 0);
    }
    // New modules follow the wrapped layer's mode: an adapter injected into an eval-mode model runs without dropout.
    const drop = new Dropout(s.loraDropout);
    for (const m of [a, b, drop]) m.training = this.baseLayer.training;
    this.registerIn('lora_A', adapterName, a);
    this.registerIn('lora_B', adapterName, b);
    this.registerIn('lora_dropout', adapterName, drop);
    this.r[adapterName] = s.r;
    this.loraAlpha[adapterName] = s.loraAlpha;
    this.scaling[adapterName] = s.scaling;
  }

  private registerIn(dict: 'lora_A' | 'lora_B' | 'lora_dropout', key: string, m: Module): void {
    (this.getSubmodule(dict) as ModuleDict).register(key, m);
  }

  /** Removes an adapter (it must not be merged). @example layer.deleteAdapter('other') */
  deleteAdapter(adapterName: string): void {
    if (!this.loraA.has(adapterName)) return;
    if (this.mergedAdapters.includes(adapterName)) {
      throw new Error(`LoraLinear: adapter '${adapterName}' is merged; unmerge() before deleting it`);
    }
    const dropped = [this.loraA.get(adapterName).weight, this.loraB.get(adapterName).weight];
    for (const dict of ['lora_A', 'lora_B', 'lora_dropout'] as const) {
      this.register(dict, (this.getSubmodule(dict) as ModuleDict).without(adapterName));
    }
    // The adapter's tensors belong to no module any more: free them (a deleted adapter counted live before).
    for (const t of dropped) t.dispose();
    delete this.r[adapterName];
    delete this.loraAlpha[adapterName];
    delete this.scaling[adapterName];
    this.activeAdapters = this.activeAdapters.filter((a) => a !== adapterName);
  }

  forward(x: Tensor): Tensor {
    if (this.disableAdapters) {
      if (this.merged) this.unmerge();
      return this.baseLayer.forward(x);
    }
    const adapters = this.activeAdapters.filter((a) => this.loraA.has(a) && !this.mergedAdapters.includes(a));
    if (adapters.length === 0) return this.baseLayer.forward(x);
    // Without dropout on its input, the first adapter rides on the base matmul: y = x W^T + b + s (x A^T) B^T in 2 kernels.
    const fused = !this.dropoutActive(adapters[0]);
    let y = fused ? this.fusedForward(x, adapters[0]) : this.baseLayer.forward(x); // [..., out]
    const x2 = x.rank === 2 ? x : reshape(x, [-1, this.inFeatures]); // [..., in] -> [N, in]
    for (const name of fused ? adapters.slice(1) : adapters) {
      const xd = this.loraDropout.get(name).forward(x2);
      const h = matmul(xd, this.loraA.get(name).weight, { transposeB: true }); // [N, r]
      // NOTE: scale the small [N, r] tensor, not the [N, out] one.
      const hs = mul(h, this.scaling[name]);
      const d = matmul(hs, this.loraB.get(name).weight, { transposeB: true }); // [N, out]
      const d2 = x.rank === 2 ? d : reshape(d, y.shape); // [..., out]
      // The forward scope frees the intermediates no backward reads: only x (for dA) and h*s (for dB) stay.
      y = add(y, d2);
    }
    return y;
  }

  private dropoutActive(name: string): boolean {
    const drop = this.loraDropout.get(name);
    return drop.training && drop.p > 0;
  }

  private fusedForward(x: Tensor, name: string): Tensor {
    const { weight, bias } = this.baseLayer;
    return lowRankLinear(x, weight, bias, this.loraA.get(name).weight, this.loraB.get(name).weight, this.scaling[name], { fanInFanOut: this.fanInFanOut });
  }

  /**
   * scaling * B @ A in the base weight's layout (`[out, in]`; `[in, out]` =
   * (B A)^T for a Conv1D base), outside autograd; the caller owns the result.
   * @example const delta = layer.deltaWeight('default');
   */
  deltaWeight(adapterName: string): Tensor {
    const a = this.loraA.get(adapterName).weight; // [r, in]
    const b = this.loraB.get(adapterName).weight; // [out, r]
    const s = this.scaling[adapterName];
    // (B A)^T = A^T B^T: the transposes are read in place by the matmul.
    return noGrad(() => tidy(() => mul(this.fanInFanOut ? matmul(a, b, { transposeA: true, transposeB: true }) : matmul(b, a), s)));
  }

  /**
   * Folds adapters into the base weight: W += scaling B A, pushed on the merge stack.
   * With `safeMerge` the new weight is checked for NaN/Inf before it is written.
   * @example layer.merge(['default'])
   */
  merge(adapterNames: readonly string[] = this.activeAdapters, safeMerge = false): void {
    for (const name of adapterNames) {
      if (!this.loraA.has(name) || this.mergedAdapters.includes(name)) continue;
      const w = this.baseLayer.weight;
      const next = noGrad(() => tidy(() => {
        const delta = this.deltaWeight(name);
        // A 16-bit base is merged in float32, then rounded back to its dtype.
        return w.dtype === 'float32' ? add(w, delta) : cast(add(cast(w, 'float32'), delta), w.dtype);
      }));
      if (safeMerge && next.backend.hasStorage && !next.dataSync().every(Number.isFinite)) {
        next.dispose();
        throw new Error(`LoraLinear: NaNs or infinities detected while merging adapter '${name}'; it is broken`);
      }
      w.assign(next);
      next.dispose();
      this.mergedAdapters.push(name);
    }
  }

  /** Unmerges every merged adapter, last merged first (W -= scaling B A). @example layer.unmerge() */
  unmerge(): void {
    while (this.mergedAdapters.length > 0) {
      const name = this.mergedAdapters.pop()!;
      const w = this.baseLayer.weight;
      const next = noGrad(() => tidy(() => {
        const delta = this.deltaWeight(name);
        return w.dtype === 'float32' ? sub(w, delta) : cast(sub(cast(w, 'float32'), delta), w.dtype);
      }));
      w.assign(next);
      next.dispose();
    }
  }
}

/**
 * PEFT's ModulesToSaveWrapper: keeps the original module (`original_module`,
 * frozen) and a trainable copy per adapter (`modules_to_save.<adapter>`);
 * forward uses the active adapter's copy unless adapters are disabled.
 * @example const head = new ModulesToSaveWrapper(model.lmHead, 'default');
 */
export class ModulesToSaveWrapper extends Module {
  originalModule: Module;
  modulesToSave: ModuleDict;
  activeAdapter: string | null;
  disableAdapters = false;

  constructor(original: Module, adapterName: string) {
    super();
    this.originalModule = this.register('original_module', original);
    this.modulesToSave = this.register('modules_to_save', new ModuleDict());
    this.activeAdapter = adapterName;
    this.addCopy(adapterName);
  }

  /** Adds a trainable copy of the original module for an adapter. @example w.addCopy('other') */
  addCopy(adapterName: string): void {
    this.modulesToSave.register(adapterName, copyModule(this.originalModule));
  }

  /** Drops an adapter's copy. */
  deleteCopy(adapterName: string): void {
    if (!this.modulesToSave.has(adapterName)) return;
    const dropped = this.modulesToSave.get(adapterName).parameters();
    this.register('modules_to_save', this.modulesToSave.without(adapterName));
    for (const t of dropped) t.dispose();
    if (this.activeAdapter === adapterName) this.activeAdapter = this.modulesToSave.keys()[0] ?? null;
  }

  /** The module forward runs now. */
  current(): Module {
    if (this.disableAdapters || this.activeAdapter === null || !this.modulesToSave.has(this.activeAdapter)) return this.originalModule;
    return this.modulesToSave.get(this.activeAdapter);
  }

  forward(...args: never[]): unknown {
    return this.current().forward(...args);
  }
}

/** Whether `copyModule` can copy m (checked before any adapter is injected). */
export function canCopyModule(m: Module): boolean {
  return m instanceof Linear || m instanceof Embedding || m instanceof LayerNorm || m instanceof RMSNorm;
}

/**
 * A fresh copy (new parameter tensors, same values) of a Linear, Conv1D, Embedding, LayerNorm or RMSNorm.
 * @example const head2 = copyModule(model.lmHead);
 */
export function copyModule(m: Module): Module {
  let out: Module;
  const backend = m.parameters()[0]?.backend.name;
  if (m instanceof Linear) out = new Linear(m.inFeatures, m.outFeatures, { bias: m.bias !== null, backend });
  else if (m instanceof Conv1D) out = new Conv1D(m.inFeatures, m.outFeatures, { bias: m.bias !== null, backend });
  else if (m instanceof Embedding) out = new Embedding(m.numEmbeddings, m.embeddingDim, { backend });
  else if (m instanceof LayerNorm) out = new LayerNorm(m.dim, m.eps, { bias: m.bias !== null, backend });
  else if (m instanceof RMSNorm) out = new RMSNorm(m.dim, m.eps, { backend });
  else throw new Error(`modulesToSave: cannot copy a ${m.constructor.name} (supported: Linear, Conv1D, Embedding, LayerNorm, RMSNorm)`);
  out.loadStateDict(m.stateDict());
  out.training = m.training;
  return out;
}

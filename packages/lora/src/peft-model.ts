import type { Tensor } from '@lowrank/core';
import { Module } from '@lowrank/nn';
import { LoraConfig, type LoraConfigInput } from './config.ts';
import { LoraModel, type CombinationType } from './tuner.ts';
import { adapterIo } from './adapter-io.ts';
import type { AdapterFiles, AdapterInput, LoadOptions, SaveOptions } from './io.ts';

/** `{ trainable, total }` parameter counts (tied weights once). */
export interface ParameterCounts {
  trainable: number;
  total: number;
}

/** Model and tuner share this call signature (what forward accepts and returns). */
type ForwardOf<M extends Module> = M['forward'];

/**
 * A model with LoRA adapters (PEFT's PeftModel): `base_model` is the LoRA
 * tuner, whose `model` is the user's model with its targeted Linears wrapped
 * in place, so in-memory keys read
 * `base_model.model.layers.0.self_attn.q_proj.lora_A.default.weight`.
 *
 * @example const peft = getPeftModel(model, { r: 8, targetModules: ['q_proj', 'v_proj'] }); peft.printTrainableParameters();
 */
export class PeftModel<M extends Module = Module> extends Module {
  baseModel: LoraModel<M>;

  /** `fill` runs on the tuner after injection; if it throws, `model` is left as it was (see LoraModel). */
  constructor(model: M, config: LoraConfig | LoraConfigInput, adapterName = 'default', fill?: (tuner: LoraModel<M>) => void) {
    super();
    this.baseModel = this.register('base_model', new LoraModel(model, config, adapterName, fill));
  }

  /** Runs the adapted model's forward with the same arguments. @example peft.forward(ids, { targets }) */
  forward(...args: Parameters<ForwardOf<M>>): ReturnType<ForwardOf<M>> {
    // M's own forward runs, so its result has M's forward's type.
    return this.baseModel.model.forward(...args) as ReturnType<ForwardOf<M>>;
  }

  /** The wrapped model (adapters still in it). @example peft.getBaseModel().config */
  getBaseModel(): M {
    return this.baseModel.model;
  }

  /** Configs by adapter name. */
  get peftConfig(): Record<string, LoraConfig> {
    return this.baseModel.peftConfig;
  }

  /** The first active adapter's name. */
  get activeAdapter(): string {
    return this.baseModel.activeAdapters[0];
  }

  get activeAdapters(): string[] {
    return [...this.baseModel.activeAdapters];
  }

  /**
   * Trainable and total parameter counts (PEFT's get_nb_trainable_parameters).
   * @example const { trainable, total } = peft.getNbTrainableParameters();
   */
  getNbTrainableParameters(): ParameterCounts {
    let trainable = 0;
    let total = 0;
    for (const p of this.parameters()) {
      total += p.size;
      if (p.requiresGrad) trainable += p.size;
    }
    return { trainable, total };
  }

  /**
   * Prints and returns PEFT's line, e.g.
   * `trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364`.
   * @example peft.printTrainableParameters();
   */
  printTrainableParameters(log: (line: string) => void = console.log): string {
    const { trainable, total } = this.getNbTrainableParameters();
    const line = formatTrainableParameters(trainable, total);
    log(line);
    return line;
  }

  /** Trainable parameters (for the optimizer). @example new AdamW(peft.trainableParameters(), { lr: 1e-3 }) */
  trainableParameters(): Tensor[] {
    return this.parameters().filter((p) => p.requiresGrad);
  }

  /** Folds adapters (default: the active ones) into the base weights; unmerge() undoes it. @example peft.merge() */
  merge(adapterNames?: readonly string[], safeMerge = false): void {
    this.baseModel.merge(adapterNames ?? this.baseModel.activeAdapters, safeMerge);
  }

  /** Unmerges every merged adapter, last merged first. @example peft.unmerge() */
  unmerge(): void {
    this.baseModel.unmerge();
  }

  /**
   * Merges the active adapters and returns the plain model: the original Linear modules,
   * now holding W + scaling B A, with their original requiresGrad.
   * @example const merged = peft.mergeAndUnload();
   */
  mergeAndUnload(safeMerge = false): M {
    return this.baseModel.unloadAndOptionallyMerge(true, safeMerge);
  }

  /** Returns the plain model without merging (the adapters are dropped). @example const base = peft.unload(); */
  unload(): M {
    return this.baseModel.unloadAndOptionallyMerge(false);
  }

  /**
   * Adds another adapter (inactive and frozen until `setAdapter`).
   * @example peft.addAdapter('style', { r: 4, targetModules: ['q_proj'] });
   */
  addAdapter(adapterName: string, config: LoraConfig | LoraConfigInput): void {
    this.baseModel.inject(adapterName, config instanceof LoraConfig ? config : new LoraConfig(config));
  }

  /** Activates an adapter (only it trains). @example peft.setAdapter('style') */
  setAdapter(adapterName: string | readonly string[]): void {
    this.baseModel.setAdapter(adapterName);
  }

  /**
   * Runs fn on the base model with every adapter off and restores them after, even if fn throws.
   * @example const baseLogits = peft.disableAdapter(() => peft.forward(ids).logits);
   */
  disableAdapter<T>(fn: () => T): T {
    return this.baseModel.withAdaptersDisabled(fn);
  }

  /** Deletes an adapter everywhere. @example peft.deleteAdapter('style') */
  deleteAdapter(adapterName: string): void {
    this.baseModel.deleteAdapter(adapterName);
  }

  /**
   * Creates `adapterName` from a weighted combination of adapters (PEFT's add_weighted_adapter).
   * `'cat'` concatenates ranks and is exactly linear in the weights; `'linear'` (equal ranks)
   * sums sqrt(w scaling)-scaled A's and B's, which is not. See LoraModel.addWeightedAdapter.
   * @example peft.addWeightedAdapter(['a', 'b'], [0.5, 0.5], 'ab', 'cat');
   */
  addWeightedAdapter(adapters: readonly string[], weights: readonly number[], adapterName: string, combinationType: CombinationType = 'cat'): void {
    this.baseModel.addWeightedAdapter(adapters, weights, adapterName, combinationType);
  }

  /**
   * The adapter's files in memory (PEFT's two files, or `adapter.lowrank`), for a
   * browser download or any storage; `loadAdapter` / `fromPretrained` take them back.
   * @example const files = peft.toFiles('peft'); new Blob([files['adapter_model.safetensors']]);
   */
  toFiles(format: 'native' | 'peft' = 'peft', opts: SaveOptions = {}): AdapterFiles {
    return adapterIo().toFiles(this, format, opts);
  }

  /**
   * Writes the adapter in the native format: `<dir>/adapter.lowrank` (msgpack: config + A/B tensors as raw bytes), atomically.
   * Paths need a file host: in Node, `import '@lowrank/lora/node'`.
   * @example await peft.saveAdapter('out/adapter');
   */
  async saveAdapter(dir: string, opts: SaveOptions = {}): Promise<string> {
    return adapterIo().saveNative(this, dir, opts);
  }

  /**
   * Loads a native adapter file as a new adapter (default: the saved name).
   * @example await peft.loadAdapter('out/adapter', { adapterName: 'other' });
   */
  async loadAdapter(dir: AdapterInput, opts: LoadOptions = {}): Promise<void> {
    await adapterIo().loadInto(this, dir, 'native', opts);
  }

  /**
   * Writes PEFT's `adapter_config.json` and `adapter_model.safetensors` into dir
   * (a path needs a file host: in Node, `import '@lowrank/lora/node'`).
   * @example await peft.savePretrained('out/peft');
   */
  async savePretrained(dir: string, opts: SaveOptions = {}): Promise<void> {
    await adapterIo().savePeft(this, dir, opts);
  }

  /**
   * Loads a PEFT-format adapter as a new adapter of this model.
   * @example await peft.loadPeftAdapter('out/peft', { adapterName: 'other' });
   */
  async loadPeftAdapter(dir: AdapterInput, opts: LoadOptions = {}): Promise<void> {
    await adapterIo().loadInto(this, dir, 'peft', opts);
  }

  /**
   * PEFT's PeftModel.from_pretrained: wraps `model` with the PEFT adapter at
   * `source` (a directory, files in memory, a base URL, a Hub id or a ModelSource; frozen unless `isTrainable`).
   * @example const peft = await PeftModel.fromPretrained(model, 'fixtures/peft/llama-tiny');
   */
  static async fromPretrained<T extends Module>(model: T, dir: AdapterInput, opts: LoadOptions = {}): Promise<PeftModel<T>> {
    return (await adapterIo().loadInto(model, dir, 'peft', opts)) as PeftModel<T>;
  }
}

/**
 * PEFT's summary line. @example formatTrainableParameters(294912, 124734720) // 'trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364'
 */
export function formatTrainableParameters(trainable: number, total: number): string {
  const pct = total === 0 ? 0 : (100 * trainable) / total;
  return `trainable params: ${trainable.toLocaleString('en-US')} || all params: ${total.toLocaleString('en-US')} || trainable%: ${pct.toFixed(4)}`;
}

/**
 * Wraps every targeted Linear of `model` (in place) in a LoraLinear and freezes
 * all other parameters; returns the PeftModel.
 * @example const peft = getPeftModel(new TransformerLM(gptTiny()), { r: 4, loraAlpha: 8, targetModules: ['q_proj', 'v_proj'] });
 */
export function getPeftModel<M extends Module>(model: M, config: LoraConfig | LoraConfigInput, adapterName = 'default'): PeftModel<M> {
  if (model instanceof PeftModel) throw new Error('getPeftModel: the model already is a PeftModel; use addAdapter()');
  return new PeftModel(model, config, adapterName);
}

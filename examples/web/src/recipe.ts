// The page's training recipe, shared by the Web Worker and by the Node side of
// the browser test, so both run exactly the same steps for the same seed.
// Browser-safe: no node:* imports.
import { decodeSafetensors, encodeSafetensors, manualSeed, noGrad, tensor, tidy, type RawTensor, type Tensor } from '@lowrank/core';
import {
  AdamW, BatchSampler, CharTokenizer, TransformerLM, resolveConfig, trainStep, trainStepAsync, type LossModel, type Module, type PreTrainedModel,
  type TransformerConfig,
} from '@lowrank/nn';
import { LoraConfig, PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, PeftModel, encodePeftAdapter, loadPeftAdapter } from '@lowrank/lora';

/** The small model the page pre-trains: sizes the user may change. */
export interface BaseSpec {
  nLayer: number;
  nHead: number;
  nEmbd: number;
  blockSize: number;
}

export const DEFAULT_BASE: BaseSpec = { nLayer: 2, nHead: 4, nEmbd: 64, blockSize: 64 };

/** One training run's settings. */
export interface TrainSpec {
  steps: number;
  batchSize: number;
  lr: number;
  seed: number;
}

export { pageLora, pretrainText, type LoraSpec } from './page-spec.ts';
import type { LoraSpec } from './page-spec.ts';

/** A base model as the page keeps it: config, vocabulary and weights (host tensors). */
export interface BaseModel {
  config: TransformerConfig;
  vocab: string[];
  tensors: Record<string, RawTensor>;
  /** Where it came from, for the page (e.g. "pre-trained here, 400 steps"). */
  source: string;
}

const META_CONFIG = 'lowrank_config';
const META_VOCAB = 'lowrank_vocab';
const META_SOURCE = 'lowrank_source';

/** The character vocabulary of the texts, sorted by code point. */
export function tokenizerFor(texts: readonly string[]): CharTokenizer {
  return CharTokenizer.fromText(texts.join(''));
}

/** A GPT-flavour config for the vocabulary and sizes. */
export function configFor(vocabSize: number, spec: BaseSpec): TransformerConfig {
  return resolveConfig({ flavour: 'gpt', vocabSize, ...spec });
}

/** A freshly initialised model; weights drawn on cpu from `seed`, so every backend starts equal. */
export function initModel(config: TransformerConfig, seed: number): TransformerLM {
  manualSeed(seed);
  return new TransformerLM(config, { backend: 'cpu' });
}

/** Host copies of every weight (tied ones once per key, as the state dict lists them). */
export function hostTensors(model: Module): Record<string, RawTensor> {
  const out: Record<string, RawTensor> = {};
  for (const [k, t] of Object.entries(model.stateDict())) out[k] = rawOf(t, t.dataSync());
  return out;
}

/** `hostTensors` read back asynchronously (every backend, webgpu included). */
export async function hostTensorsAsync(model: Module): Promise<Record<string, RawTensor>> {
  const out: Record<string, RawTensor> = {};
  for (const [k, t] of Object.entries(model.stateDict())) out[k] = rawOf(t, await t.data());
  return out;
}

function rawOf(t: Tensor, values: ArrayLike<number>): RawTensor {
  return { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(values) };
}

/** A model on `backend` holding the base's weights. */
export function instantiate(base: BaseModel, backend: string): TransformerLM {
  const model = new TransformerLM(base.config, { backend: 'cpu' });
  model.loadStateDict(base.tensors);
  if (backend !== 'cpu') model.to(backend);
  return model;
}

/** The base model as one safetensors file; config, vocabulary and source ride in its metadata. */
export function encodeBase(base: BaseModel): Uint8Array {
  return encodeSafetensors(base.tensors, {
    format: 'pt',
    [META_CONFIG]: JSON.stringify(base.config),
    [META_VOCAB]: JSON.stringify(base.vocab),
    [META_SOURCE]: base.source,
  });
}

/**
 * Reads a file written by {@link encodeBase}. Anything else fails with a message
 * naming the file and what is wrong; nothing is changed on failure.
 */
export function decodeBase(bytes: Uint8Array, fileName: string): BaseModel {
  let decoded: ReturnType<typeof decodeSafetensors>;
  try {
    decoded = decodeSafetensors(bytes);
  } catch (e) {
    throw new Error(`${fileName}: not a readable safetensors file (${(e as Error).message})`);
  }
  const meta = decoded.metadata ?? {};
  if (!meta[META_CONFIG] || !meta[META_VOCAB]) {
    throw new Error(`${fileName}: a safetensors file, but not a base model saved by this page (no '${META_CONFIG}' / '${META_VOCAB}' metadata)`);
  }
  let config: TransformerConfig;
  let vocab: string[];
  try {
    config = resolveConfig(JSON.parse(meta[META_CONFIG]) as TransformerConfig);
    vocab = CharTokenizer.fromJSON({ type: 'char', vocab: JSON.parse(meta[META_VOCAB]) as string[] }).vocab.slice();
  } catch (e) {
    throw new Error(`${fileName}: bad model metadata (${(e as Error).message})`);
  }
  if (vocab.length !== config.vocabSize) {
    throw new Error(`${fileName}: the vocabulary has ${vocab.length} characters but the config says vocabSize ${config.vocabSize}`);
  }
  const tensors: Record<string, RawTensor> = Object.fromEntries(decoded.tensors);
  const base: BaseModel = { config, vocab, tensors, source: meta[META_SOURCE] ?? fileName };
  // Checks every key and shape now (loadStateDict is strict), so a bad file never reaches training.
  try {
    instantiate(base, 'cpu');
  } catch (e) {
    throw new Error(`${fileName}: the weights do not fit the config: ${(e as Error).message}`);
  }
  return base;
}

/**
 * Text -> ids with the base's vocabulary. Unknown characters are an error
 * naming the first one, unless `skipUnknown`; too short a text is an error.
 */
export function encodeText(tokenizer: CharTokenizer, text: string, blockSize: number, skipUnknown: boolean): Int32Array {
  const ids = tokenizer.encode(text, { unknown: skipUnknown ? 'skip' : 'error' });
  if (ids.length < blockSize + 2) {
    throw new Error(`the text has ${ids.length} usable characters; training needs at least ${blockSize + 2} (the context length + 2)`);
  }
  return ids;
}

/** What one step reports. */
export interface StepResult {
  step: number;
  loss: number;
  ms: number;
  tokens: number;
}

/** A training run driven one step at a time (the worker yields between steps). */
export class Run {
  readonly losses: number[] = [];
  readonly stepMs: number[] = [];
  private readonly sampler: BatchSampler;
  private readonly optimizer: AdamW;

  constructor(readonly model: LossModel, params: Tensor[], ids: Int32Array, readonly spec: TrainSpec, readonly blockSize: number) {
    this.sampler = new BatchSampler(ids, { batchSize: spec.batchSize, blockSize, seed: spec.seed });
    this.optimizer = new AdamW(params, { lr: spec.lr, weightDecay: 0 });
    model.train();
  }

  get done(): boolean {
    return this.losses.length >= this.spec.steps;
  }

  step(): StepResult {
    const batch = this.sampler.next();
    const t0 = performance.now();
    const { loss } = trainStep(this.model, this.optimizer, batch);
    return this.record(loss, performance.now() - t0, batch.x.length);
  }

  /** `step` with the loss read back asynchronously: runs on every backend (webgpu reads back only this way). */
  async stepAsync(): Promise<StepResult> {
    const batch = this.sampler.next();
    const t0 = performance.now();
    const { loss } = await trainStepAsync(this.model, this.optimizer, batch);
    return this.record(loss, performance.now() - t0, batch.x.length);
  }

  private record(loss: number, ms: number, tokens: number): StepResult {
    if (!Number.isFinite(loss)) throw new Error(`training diverged: loss ${loss} at step ${this.losses.length + 1} (try a smaller learning rate)`);
    this.losses.push(loss);
    this.stepMs.push(ms);
    return { step: this.losses.length, loss, ms, tokens };
  }
}

/** Pre-training from scratch: a fresh model (seeded) on `backend`, every weight trainable. */
export function pretrainRun(config: TransformerConfig, ids: Int32Array, spec: TrainSpec, backend: string): Run {
  const model = initModel(config, spec.seed);
  if (backend !== 'cpu') model.to(backend);
  return new Run(model, model.parameters(), ids, spec, config.blockSize);
}

/** The LoRA config the page trains (dropout 0: the same numbers on every backend). */
export function loraConfigOf(spec: LoraSpec): LoraConfig {
  return new LoraConfig({ r: spec.r, loraAlpha: spec.alpha, loraDropout: 0, targetModules: [...spec.targets] });
}

/** LoRA fine-tuning: the base on `backend`, adapters initialised on cpu from the seed, then moved. */
export function loraRun(base: BaseModel, ids: Int32Array, spec: TrainSpec, lora: LoraSpec, backend: string): Run {
  const model = instantiate(base, 'cpu');
  manualSeed(spec.seed);
  const peft = new PeftModel(model, loraConfigOf(lora));
  if (backend !== 'cpu') peft.to(backend);
  return new Run(peft, peft.trainableParameters(), ids, spec, base.config.blockSize);
}

/**
 * A cpu copy of an adapted model whose parameters live on a backend that reads
 * back only asynchronously (webgpu): the base from `base`, the trainable
 * parameters read with `await p.data()`.
 */
export async function cpuPeftCopy(base: BaseModel, peft: PeftModel<TransformerLM>, lora: LoraSpec): Promise<PeftModel<TransformerLM>> {
  const copy = new PeftModel(instantiate(base, 'cpu'), loraConfigOf(lora));
  const trainable = new Set(peft.trainableParameters());
  const values: Record<string, { shape: number[]; data: number[] }> = {};
  for (const [k, p] of peft.namedParameters()) {
    if (trainable.has(p)) values[k] = { shape: [...p.shape], data: Array.from(await p.data()) };
  }
  copy.loadStateDict(values, { strict: false });
  return copy;
}

/** PEFT's two files, as bytes: adapter_config.json and adapter_model.safetensors. */
export interface PeftFiles {
  config: Uint8Array;
  weights: Uint8Array;
}

/** The adapter's PEFT files, from the library's in-memory writer. */
export function peftFiles(peft: PeftModel): PeftFiles {
  const files = encodePeftAdapter(peft);
  return { config: files[PEFT_CONFIG_FILE], weights: files[PEFT_WEIGHTS_FILE] };
}

/**
 * A PEFT adapter (the two files' bytes) on a fresh copy of the base, through the
 * library's in-memory loader; a bad file is an error naming it, and nothing is kept.
 */
export async function loadPeft(base: BaseModel, files: PeftFiles, backend: string): Promise<PeftModel<TransformerLM>> {
  const peft = await loadPeftAdapter(instantiate(base, 'cpu'), { [PEFT_CONFIG_FILE]: files.config, [PEFT_WEIGHTS_FILE]: files.weights }, 'default', { onWarning: () => {} });
  if (backend !== 'cpu') peft.to(backend);
  return peft;
}

/** A fixed probe batch: the first rows of the text, for comparing logits across machines. */
export function probeIds(ids: Int32Array, blockSize: number, rows = 2): Int32Array {
  const n = Math.min(rows, Math.floor(ids.length / blockSize));
  return ids.slice(0, n * blockSize);
}

/** A model the page reads logits from: its own GPT or a Hugging Face one, with or without an adapter. */
type LogitsModel = TransformerLM | PeftModel<TransformerLM> | PreTrainedModel | PeftModel<PreTrainedModel>;

/** The model's logits on probe ids (eval mode, no graph). */
export function logitsOf(model: LogitsModel, ids: Int32Array, blockSize: number): Float32Array {
  const backend = model.parameters()[0].backend.name;
  const wasTraining = model.training;
  model.eval();
  try {
    return tidy(() => noGrad(() => {
      const x = tensor(ids, { shape: [ids.length / blockSize, blockSize], dtype: 'int32', backend });
      return Float32Array.from(model.forward(x, {}).logits.dataSync());
    }));
  } finally {
    model.train(wasTraining);
  }
}

/** Samples a continuation of `prompt` (unknown characters in it are an error). */
export function generateText(
  model: TransformerLM, tokenizer: CharTokenizer, prompt: string, opts: { maxNewTokens: number; temperature: number; topK: number; seed: number },
): string {
  const ids = tokenizer.encode(prompt.length ? prompt : tokenizer.vocab[0]);
  const backend = model.parameters()[0].backend.name;
  const out = tidy(() => {
    const x = tensor(ids, { shape: [1, ids.length], dtype: 'int32', backend });
    return model.generate(x, opts).dataSync();
  });
  return tokenizer.decode(out.subarray(ids.length));
}

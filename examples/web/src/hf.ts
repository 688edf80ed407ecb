// A Hugging Face model directory (config.json, model.safetensors or shards,
// tokenizer.json) as the page's base: read from the files the user picks, LoRA
// on PEFT's default modules for the architecture. Shared by the worker and the
// Node side of the browser test. Browser-safe: no node:* imports.
import { manualSeed, tidy, tensor } from '@lowrank/core';
import { AutoModelForCausalLM, AutoTokenizer, type PreTrainedModel, type PreTrainedTokenizer } from '@lowrank/nn';
import { PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, defaultTargetModules, getPeftModel, loadPeftAdapter, type PeftModel } from '@lowrank/lora';
import { Run, logitsOf, type TrainSpec } from './recipe.ts';

/** The page trains on windows of at most this many tokens (or the model's positions, if fewer). */
export const HF_CONTEXT = 64;

/** A model directory held as its files; every run builds its model from them. */
export interface HfBase {
  name: string;
  files: Map<string, Uint8Array>;
  tokenizer: PreTrainedTokenizer;
  modelType: string;
  parameters: number;
  nLayer: number;
  hidden: number;
  vocabSize: number;
  blockSize: number;
  targets: string[];
}

/** Files picked from a folder keep their paths (`gpt2/config.json`); the model wants the names inside it. */
export function filesByName(entries: Iterable<[string, Uint8Array]>): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const [path, bytes] of entries) {
    const name = path.split('/').pop() ?? path;
    if (out.has(name)) throw new Error(`two files named ${name} (pick one model folder)`);
    out.set(name, bytes);
  }
  return out;
}

/** Reads the model and its tokenizer (every check of fromPretrained runs here, before the page changes). */
export async function loadHfBase(files: Map<string, Uint8Array>, name: string): Promise<HfBase> {
  if (!files.has('config.json')) throw new Error(`${name}: no config.json among the files (${[...files.keys()].join(', ') || 'none'}); pick a Hugging Face model folder`);
  const model = await AutoModelForCausalLM.fromPretrained(files);
  const tokenizer = await AutoTokenizer.fromPretrained(files);
  const c = model.config;
  const base: HfBase = {
    name, files, tokenizer, modelType: c.modelType, parameters: model.numParameters(), nLayer: c.numHiddenLayers,
    hidden: c.hiddenSize, vocabSize: model.vocabSize, blockSize: Math.min(HF_CONTEXT, model.maxPositions - 1),
    targets: defaultTargetModules(c.modelType),
  };
  for (const p of model.parameters()) p.dispose();
  return base;
}

/** The text as token ids; an error when it is shorter than a training window. */
export function encodeHf(base: HfBase, text: string): Int32Array {
  const ids = Int32Array.from(base.tokenizer.encode(text));
  if (ids.length < base.blockSize + 2) {
    throw new Error(`the text has ${ids.length} tokens; training needs at least ${base.blockSize + 2} (the context length + 2)`);
  }
  return ids;
}

/** A fresh model from the files on `backend`. */
export async function instantiateHf(base: HfBase, backend: string): Promise<PreTrainedModel> {
  return AutoModelForCausalLM.fromPretrained(base.files, { backend });
}

/** LoRA (dropout 0, adapters drawn on cpu from the seed) on PEFT's default modules of the architecture. */
export async function hfLoraRun(base: HfBase, ids: Int32Array, spec: TrainSpec, r: number, backend: string): Promise<Run> {
  const model = await instantiateHf(base, 'cpu'); // LoRA's A drawn on cpu from the seed, then moved
  manualSeed(spec.seed);
  const peft = getPeftModel(model, { r, loraAlpha: 2 * r, loraDropout: 0, targetModules: base.targets });
  if (backend !== 'cpu') peft.to(backend);
  return new Run(peft, peft.trainableParameters(), ids, spec, base.blockSize);
}

/** Samples a continuation of `prompt` with the model's tokenizer (stops at its eos). */
export function generateHf(
  model: PreTrainedModel, base: HfBase, prompt: string, opts: { maxNewTokens: number; temperature: number; topK: number; seed: number },
): string {
  const ids = base.tokenizer.encode(prompt.length ? prompt : ' ');
  const room = model.maxPositions - ids.length;
  if (room < 1) throw new Error(`the prompt has ${ids.length} tokens; the model has ${model.maxPositions} positions`);
  const backend = model.parameters()[0].backend.name;
  const sampling = opts.temperature > 0 ? { doSample: true, temperature: opts.temperature, topK: opts.topK, seed: opts.seed } : {};
  const out = tidy(() => {
    const x = tensor(ids, { shape: [1, ids.length], dtype: 'int32', backend });
    return model.generate(x, { maxNewTokens: Math.min(opts.maxNewTokens, room), ...sampling }).dataSync();
  });
  return base.tokenizer.decode(out.subarray(ids.length), { skipSpecialTokens: true });
}

/** A PEFT adapter (the two files' bytes) on a fresh model from the base's files; a bad file is an error naming it. */
export async function loadHfPeft(base: HfBase, files: { config: Uint8Array; weights: Uint8Array }, backend: string): Promise<PeftModel<PreTrainedModel>> {
  const model = await instantiateHf(base, 'cpu');
  const peft = await loadPeftAdapter(model, { [PEFT_CONFIG_FILE]: files.config, [PEFT_WEIGHTS_FILE]: files.weights }, 'default', { onWarning: () => {} });
  if (backend !== 'cpu') peft.to(backend);
  return peft;
}

/** Logits of the first training window of `text` (eval mode, no graph), for comparing page and Node. */
export function hfLogits(model: PreTrainedModel | PeftModel<PreTrainedModel>, base: HfBase, text: string): { logits: Float32Array; ids: Int32Array } {
  const ids = encodeHf(base, text).slice(0, base.blockSize);
  return { logits: logitsOf(model, ids, ids.length), ids };
}

import {
  decodeCheckpoint, decodeSafetensors, encodeCheckpoint, encodeSafetensors, getFileHost, isRawTensor,
  type CheckpointValue, type FileHost, type RawTensor,
} from '@lowrank/core';
import {
  PreTrainedModel, TransformerLM, openSource, sourceResolverNames, type Module, type ModelSource, type SourceInput,
} from '@lowrank/nn';
import type { LoraConfig } from './config.ts';
import {
  PEFT_PREFIX, adapterTensors, loraConfigFromPeftJson, loraConfigToPeftJson, toTransformersLayout, type ReadOptions,
} from './peft-format.ts';
import { addAdapterFromTensors } from './load.ts';
import { installAdapterIo } from './adapter-io.ts';
import { PeftModel } from './peft-model.ts';

/** Native adapter file name inside its directory. */
export const ADAPTER_FILE = 'adapter.lowrank';
export const PEFT_CONFIG_FILE = 'adapter_config.json';
export const PEFT_WEIGHTS_FILE = 'adapter_model.safetensors';
const NATIVE_KIND = 'lowrank-lora-adapter';

/** An adapter's files in memory, by file name (`adapter_config.json` -> its bytes). */
export type AdapterFiles = Record<string, Uint8Array<ArrayBuffer>>;

/** The same bytes typed over a plain ArrayBuffer (what `new Blob([...])` accepts); copies only a shared buffer. */
function plain(u: Uint8Array): Uint8Array<ArrayBuffer> {
  return u.buffer instanceof ArrayBuffer ? (u as Uint8Array<ArrayBuffer>) : new Uint8Array(u);
}

/**
 * Adapter files to load from memory: bytes, or Blobs / `File`s (from an
 * `<input type="file">` or a drop), by file name.
 */
export type AdapterFileSource = Record<string, Uint8Array | ArrayBuffer | Blob> | Map<string, Uint8Array | ArrayBuffer | Blob>;

/** Where adapter files are read from: a named file's bytes, and a label for errors. */
interface FileReader {
  read(name: string): Promise<Uint8Array>;
  label(name: string): string;
}

export interface SaveOptions {
  /** Which adapter (default: the active one). */
  adapterName?: string;
  /**
   * PEFT files only: 'transformers' names the tensors after Hugging Face's
   * LlamaForCausalLM (decoder under `model.`), for a llama-flavour model;
   * the default keeps this model's own module paths.
   */
  layout?: 'lowrank' | 'transformers';
}

export interface LoadOptions extends ReadOptions {
  /** Name of the new adapter (default: the saved name for native files, else 'default'). */
  adapterName?: string;
  /** Leave the loaded adapter trainable (default false: inference mode, as PEFT). */
  isTrainable?: boolean;
}

function pickAdapter(peft: PeftModel, name: string | undefined): [string, LoraConfig] {
  const adapter = name ?? peft.activeAdapter;
  const cfg = peft.peftConfig[adapter];
  if (!cfg) throw new Error(`save: no adapter named '${adapter}'`);
  return [adapter, cfg];
}

function targetNames(peft: PeftModel, adapter: string): string[] {
  return peft.baseModel.loraLayers().filter(([, l]) => l.loraA.has(adapter)).map(([n]) => n);
}

/**
 * The native adapter file's bytes (`adapter.lowrank`): msgpack (core's
 * encodeCheckpoint) holding the PEFT-style config and, per adapted module, its
 * lora_A / lora_B as raw little-endian float32 bytes.
 * @example const bytes = encodeNativeAdapter(peft); new Blob([bytes]);
 */
export function encodeNativeAdapter(peft: PeftModel, opts: SaveOptions = {}): Uint8Array<ArrayBuffer> {
  const [adapter, cfg] = pickAdapter(peft, opts.adapterName);
  const tensors = adapterTensors(peft.baseModel, adapter);
  const modules: Record<string, CheckpointValue> = {};
  const extra: Record<string, CheckpointValue> = {};
  for (const [key, t] of Object.entries(tensors)) {
    const k = key.slice(PEFT_PREFIX.length);
    const m = /^(.*)\.(lora_A|lora_B)\.weight$/.exec(k);
    if (m) {
      const entry = (modules[m[1]] ??= {}) as Record<string, CheckpointValue>;
      entry[m[2]] = t;
    } else {
      extra[k] = t;
    }
  }
  const file: CheckpointValue = {
    kind: NATIVE_KIND,
    adapterName: adapter,
    config: loraConfigToPeftJson(cfg, targetNames(peft, adapter)) as unknown as CheckpointValue,
    modules,
    extra,
  };
  return plain(encodeCheckpoint(file));
}

/**
 * PEFT's two files in memory: `adapter_config.json` (snake_case keys, sorted, 2-space
 * indent) and `adapter_model.safetensors` (`base_model.model.<path>.lora_A.weight`,
 * metadata {format: 'pt'}).
 * @example const files = encodePeftAdapter(peft); files['adapter_model.safetensors'].byteLength
 */
export function encodePeftAdapter(peft: PeftModel, opts: SaveOptions = {}): AdapterFiles {

  const [adapter, cfg] = pickAdapter(peft, opts.adapterName);
  const json = loraConfigToPeftJson(cfg, targetNames(peft, adapter), true);
  let tensors = adapterTensors(peft.baseModel, adapter);
  const base = peft.baseModel.model;
  // A Hugging Face architecture already has transformers' module paths: nothing to rename.
  if (opts.layout === 'transformers' && !(base instanceof PreTrainedModel)) {
    if (!(base instanceof TransformerLM) || base.config.flavour !== 'llama') {
      throw new Error("savePretrained: layout 'transformers' needs a llama-flavour TransformerLM (GPT-2 checkpoints fuse q, k, v into c_attn)");
    }
    tensors = toTransformersLayout(tensors);
  }
  return {
    [PEFT_CONFIG_FILE]: new TextEncoder().encode(`${JSON.stringify(json, null, 2)}\n`),
    [PEFT_WEIGHTS_FILE]: plain(encodeSafetensors(tensors, { format: 'pt' })),
  };
}

/**
 * An adapter's files in memory: `{ 'adapter.lowrank' }` (native) or PEFT's two files.
 * @example const files = adapterToFiles(peft, 'peft'); // download each, or hand to loadAdapterInto
 */
export function adapterToFiles(peft: PeftModel, format: 'native' | 'peft', opts: SaveOptions = {}): AdapterFiles {
  return format === 'native' ? { [ADAPTER_FILE]: encodeNativeAdapter(peft, opts) } : encodePeftAdapter(peft, opts);
}

/**
 * Writes files into dir (created if needed) through a file host; several files go
 * as one unit where the host can (`writeFileSet`: Node's does), so a crash never
 * leaves a new config beside old weights. Returns their paths.
 */
export async function writeAdapterDir(host: FileHost, dir: string, files: AdapterFiles): Promise<string[]> {
  await host.mkdir(dir);
  const names = Object.keys(files);
  if (names.length > 1 && host.writeFileSet) await host.writeFileSet(dir, files);
  else for (const name of names) await host.writeFile(host.join(dir, name), files[name]);
  return names.map((name) => host.join(dir, name));
}

/**
 * Writes `<dir>/adapter.lowrank` atomically through the installed file host
 * (Node: `@lowrank/lora/node`); returns the file path.
 * @example await saveNativeFile(peft, 'out/adapter');
 */
export async function saveNativeFile(peft: PeftModel, dir: string, opts: SaveOptions = {}): Promise<string> {
  const [out] = await writeAdapterDir(getFileHost('saveAdapter'), dir, adapterToFiles(peft, 'native', opts));
  return out;
}

/**
 * Writes PEFT's `adapter_config.json` and `adapter_model.safetensors` into dir through
 * the installed file host (Node: `@lowrank/lora/node`).
 * @example await savePeftFiles(peft, 'out/peft');
 */
export async function savePeftFiles(peft: PeftModel, dir: string, opts: SaveOptions = {}): Promise<void> {
  await writeAdapterDir(getFileHost('savePretrained'), dir, adapterToFiles(peft, 'peft', opts));
}

function dirReader(host: FileHost, dir: string): FileReader {
  // One view of the set per load, so every file comes from the same save.
  let set: Promise<{ read(name: string): Promise<Uint8Array> }> | null = null;
  const read = (name: string): Promise<Uint8Array> => {
    if (!host.openFileSet) return host.readFile(host.join(dir, name));
    set ??= host.openFileSet(dir);
    return set.then((s) => s.read(name));
  };
  return { read, label: (name) => host.join(dir, name) };
}

async function toBytes(v: Uint8Array | ArrayBuffer | Blob): Promise<Uint8Array> {
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  return new Uint8Array(await v.arrayBuffer());
}

function memoryReader(files: AdapterFileSource): FileReader {
  const get = (name: string): Uint8Array | ArrayBuffer | Blob | undefined => (files instanceof Map ? files.get(name) : files[name]);
  return {
    read: async (name) => {
      const v = get(name);
      if (v === undefined) {
        const have = files instanceof Map ? [...files.keys()] : Object.keys(files);
        throw new Error(`loadAdapter: no file '${name}' among the given files (${have.join(', ') || 'none'})`);
      }
      return toBytes(v);
    },
    label: (name) => name,
  };
}

/** Where an adapter can come from: a directory path, files in memory, or any model source (a base URL, a ModelSource, a Hub id). */
export type AdapterInput = string | URL | AdapterFileSource | ModelSource;

function sourceReader(src: ModelSource): FileReader {
  return {
    read: async (name) => {
      const bytes = await src.read(name);
      if (!bytes) throw new Error(`${src.describe}: ${name} not found (expected the PEFT adapter's ${name === PEFT_CONFIG_FILE ? 'config' : 'files'})`);
      return bytes;
    },
    label: (name) => `${src.describe}/${name}`,
  };
}

function isModelSource(v: unknown): v is ModelSource {
  return typeof v === 'object' && v !== null && !(v instanceof Map) && typeof (v as ModelSource).read === 'function';
}

async function readerFor(from: AdapterInput, caller: string): Promise<FileReader> {
  if (from instanceof URL || isModelSource(from)) return sourceReader(await openSource(from as SourceInput));
  if (typeof from === 'string') {
    // With @lowrank/nn/node (directories) or for URLs and Hub ids, nn's openSource decides; else the installed file host.
    if (/^https?:\/\//i.test(from) || sourceResolverNames().includes('directory')) return sourceReader(await openSource(from));
    return dirReader(getFileHost(caller), from);
  }
  return memoryReader(from);
}

interface ReadAdapter {
  config: LoraConfig;
  tensors: Map<string, RawTensor>;
  savedName?: string;
}

function isMap(v: CheckpointValue | undefined): v is { [key: string]: CheckpointValue } {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !isRawTensor(v);
}

async function readNative(src: FileReader, opts: ReadOptions): Promise<ReadAdapter> {
  const file = src.label(ADAPTER_FILE);
  let top: CheckpointValue;
  try {
    top = decodeCheckpoint(await src.read(ADAPTER_FILE));
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  if (!isMap(top) || top.kind !== NATIVE_KIND) throw new Error(`${file}: not a lowrank LoRA adapter file (kind '${NATIVE_KIND}')`);
  const config = loraConfigFromPeftJson(top.config, { ...opts, source: `${file} (config)` });
  const tensors = new Map<string, RawTensor>();
  const modules = top.modules ?? {};
  const extra = top.extra ?? {};
  if (!isMap(modules)) throw new Error(`${file}: 'modules' must be a map of module path -> { lora_A, lora_B }`);
  if (!isMap(extra)) throw new Error(`${file}: 'extra' must be a map of name -> tensor`);
  for (const m of Object.keys(modules)) {
    const ab = modules[m];
    if (!isMap(ab)) throw new Error(`${file}: modules['${m}'] must be a map { lora_A, lora_B }`);
    for (const which of Object.keys(ab)) {
      const v = ab[which];
      if (which !== 'lora_A' && which !== 'lora_B') throw new Error(`${file}: modules['${m}'] has '${which}', expected lora_A and lora_B`);
      if (!isRawTensor(v)) throw new Error(`${file}: ${m}.${which} is not a tensor`);
      tensors.set(`${m}.${which}.weight`, v);
    }
  }
  for (const k of Object.keys(extra)) {
    const v = extra[k];
    if (!isRawTensor(v)) throw new Error(`${file}: extra '${k}' is not a tensor`);
    tensors.set(k, v);
  }
  return { config, tensors, savedName: typeof top.adapterName === 'string' ? top.adapterName : undefined };
}

async function readPeft(src: FileReader, opts: ReadOptions): Promise<ReadAdapter> {
  const text = new TextDecoder().decode(await src.read(PEFT_CONFIG_FILE));
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${src.label(PEFT_CONFIG_FILE)}: not valid JSON (${(err as Error).message})`);
  }
  const config = loraConfigFromPeftJson(json, { ...opts, source: src.label(PEFT_CONFIG_FILE) });
  const weights = src.label(PEFT_WEIGHTS_FILE);
  let tensors: Map<string, RawTensor>;
  try {
    ({ tensors } = decodeSafetensors(await src.read(PEFT_WEIGHTS_FILE)));
  } catch (err) {
    throw new Error(`${weights}: ${(err as Error).message}`);
  }
  return { config, tensors };
}

/**
 * Adds an adapter to a model, from a directory (through the installed file host;
 * Node: `@lowrank/lora/node`) or from files in memory: a plain model becomes a
 * PeftModel, a PeftModel gets one more adapter. If anything fails (unknown tensor
 * key, shape, missing tensor) the model is left as it was.
 * @example const peft = await loadAdapterInto(model, 'out/peft', 'peft', { isTrainable: true });
 * @example const peft = await loadAdapterInto(model, { 'adapter_config.json': cfgFile, 'adapter_model.safetensors': weightsFile }, 'peft');
 */
export async function loadAdapterInto(
  model: Module, from: AdapterInput, format: 'native' | 'peft', opts: LoadOptions = {},
): Promise<PeftModel> {
  const src = await readerFor(from, format === 'native' ? 'loadAdapter' : 'loadPeftAdapter');
  const read = format === 'native' ? await readNative(src, opts) : await readPeft(src, opts);
  const config = read.config.with({ inferenceMode: !(opts.isTrainable ?? false) });
  const name = opts.adapterName ?? (model instanceof PeftModel ? read.savedName : undefined) ?? 'default';
  const what = `adapter from ${src.label(format === 'native' ? ADAPTER_FILE : PEFT_WEIGHTS_FILE)}`;
  return addAdapterFromTensors(model, config, read.tensors, name, what);
}

/**
 * Loads a PEFT adapter directory onto a model (PeftModel.from_pretrained); a model that
 * already is a PeftModel gets it as one more adapter (prefer `peft.loadPeftAdapter`).
 * @example const peft = await loadPeftAdapter(model, 'fixtures/peft/llama-tiny');
 */
export async function loadPeftAdapter<M extends Module>(model: M, dir: AdapterInput, adapterName?: string, opts: Omit<LoadOptions, 'adapterName'> = {}): Promise<PeftModel<M>> {
  return (await loadAdapterInto(model, dir, 'peft', { ...opts, adapterName })) as PeftModel<M>;
}

/**
 * Loads a native `adapter.lowrank` directory onto a model.
 * @example const peft = await loadAdapter(model, 'out/adapter');
 */
export async function loadAdapter<M extends Module>(model: M, dir: AdapterInput, opts: LoadOptions = {}): Promise<PeftModel<M>> {
  return (await loadAdapterInto(model, dir, 'native', opts)) as PeftModel<M>;
}

/**
 * Saves a PeftModel's adapter natively (`adapter.lowrank`).
 * @example await saveAdapter(peft, 'out/adapter');
 */
export async function saveAdapter(peft: PeftModel, dir: string, opts: SaveOptions = {}): Promise<string> {
  return saveNativeFile(peft, dir, opts);
}

/**
 * Saves a PeftModel's adapter in PEFT's format.
 * @example await savePretrained(peft, 'out/peft');
 */
export async function savePretrained(peft: PeftModel, dir: string, opts: SaveOptions = {}): Promise<void> {
  return savePeftFiles(peft, dir, opts);
}

installAdapterIo({ toFiles: adapterToFiles, saveNative: saveNativeFile, savePeft: savePeftFiles, loadInto: loadAdapterInto });
